//! Accepting connections: what a client may hold open before any call is
//! authenticated.
//!
//! [`incoming`] runs its own accept loop and hands tonic one [`Connection`]
//! at a time (through `serve_with_incoming_shutdown`):
//!
//! * **caps** — at most `max_connections` open connections in all and
//!   `max_connections_per_peer` per client IP address; a connection beyond
//!   either is closed as soon as it is accepted (counted in
//!   `salesmetrics_connections_refused_total{reason}`);
//! * **first byte** — a connection that sends nothing within the handshake
//!   timeout is closed before tonic sees it (with TLS, tonic then bounds the
//!   handshake itself by the same timeout);
//! * **idle** — a connection with no call in progress for the idle timeout
//!   is closed: the auth layer marks each call on the connection it came in
//!   on ([`ConnectionInfo::begin_call`]), and the connection ends its read
//!   side (as if the client had closed it) once it has been idle that long;
//! * **accept errors** — running out of file descriptors (EMFILE/ENFILE) or
//!   memory makes `accept` fail until something is closed; the loop then
//!   sleeps, 10 ms doubling up to 1 s, instead of spinning, and logs at most
//!   once per second.
//!
//! [`raise_fd_limit`] lifts the soft limit of open files to the hard limit
//! at start-up, so the connection cap, not the default soft limit (often
//! 1024), is what bounds connections.
//!
//! The limits are described for operators in `docs/security.md`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::auth::layer::LogSampler;
use crate::metrics::{ConnectionRefusal, Metrics};

/// First pause after a failed `accept`; doubled on each further failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest pause after a failed `accept`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connections accepted and checked but not yet taken by tonic.
const HANDOFF_QUEUE: usize = 128;

/// File descriptors kept for everything but client connections (database
/// connections, the metrics port, log files…) when the connection cap is
/// compared with the open-files limit (a quarter of a limit below 512).
pub const RESERVED_FDS: u64 = 128;

/// What [`incoming`] enforces.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most open connections in all (0: unlimited).
    pub max_connections: usize,
    /// Most open connections from one IP address (0: unlimited).
    pub max_connections_per_peer: usize,
    /// How long a new connection may stay silent before it is closed
    /// (`None`: forever).
    pub handshake_timeout: Option<Duration>,
    /// How long a connection may go without a call in progress before it is
    /// closed (`None`: forever).
    pub idle_timeout: Option<Duration>,
}

/// Calls in progress on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    /// (calls in progress, when the connection last became idle).
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    /// When the connection will have been idle long enough to close, if it
    /// is idle now; `None` while a call is in progress.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let (calls, since) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (calls == 0).then(|| since + timeout)
    }
}

/// What tonic puts into the extensions of every request of a connection
/// (inside `TlsConnectInfo` with TLS): its addresses, and the count of its
/// calls in progress that keeps it from being closed as idle.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The server's address of the connection.
    pub local_addr: Option<SocketAddr>,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// Calls in progress.
    activity: Arc<Activity>,
}

impl ConnectionInfo {
    /// The connection a request came in on, with or without TLS.
    pub fn of(extensions: &tonic::codegen::http::Extensions) -> Option<&ConnectionInfo> {
        extensions.get::<ConnectionInfo>().or_else(|| {
            extensions
                .get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>()
                .map(|tls| tls.get_ref())
        })
    }

    /// The client's IP address (an IPv4 client of an IPv6 listener as its
    /// IPv4 address).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.remote_addr.map(|a| a.ip().to_canonical())
    }

    /// tonic's own description of the connection, for code that reads
    /// `Request::remote_addr`.
    pub fn tcp_connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.local_addr,
            remote_addr: self.remote_addr,
        }
    }

    /// Marks a call in progress on this connection until the returned guard
    /// is dropped (with the call's response body).
    pub fn begin_call(&self) -> CallInProgress {
        let mut state = self
            .activity
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.0 += 1;
        CallInProgress {
            activity: self.activity.clone(),
        }
    }
}

/// A call in progress on a connection; see [`ConnectionInfo::begin_call`].
#[derive(Debug)]
pub struct CallInProgress {
    activity: Arc<Activity>,
}

impl Drop for CallInProgress {
    fn drop(&mut self) {
        let mut state = self
            .activity
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            state.1 = Instant::now();
        }
    }
}

/// Open connections, in all and per IP address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// The counts shared by the accept loop and every open connection.
struct Registry {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// A slot for a new connection from `peer`, or why there is none.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, ConnectionRefusal> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.limits.max_connections;
        if max > 0 && counts.total >= max {
            return Err(ConnectionRefusal::MaxConnections);
        }
        let per_peer = counts.per_peer.get(&peer).copied().unwrap_or(0);
        let max = self.limits.max_connections_per_peer;
        if max > 0 && per_peer >= max {
            return Err(ConnectionRefusal::MaxConnectionsPerPeer);
        }
        counts.total += 1;
        *counts.per_peer.entry(peer).or_default() += 1;
        self.metrics.connection_opened();
        Ok(Slot {
            registry: self.clone(),
            peer,
        })
    }
}

/// One counted open connection; uncounted when dropped.
struct Slot {
    registry: Arc<Registry>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .registry
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
        self.registry.metrics.connection_closed();
    }
}

/// An accepted client connection, as tonic serves it.
pub struct Connection {
    stream: TcpStream,
    info: ConnectionInfo,
    /// Closes the read side once the connection has been idle too long.
    idle: Option<IdleClose>,
    /// Counts the connection as open while it lives.
    _slot: Slot,
}

/// The idle timer of a connection.
struct IdleClose {
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// Set once the timeout has passed: every later read ends.
    expired: bool,
    metrics: Arc<Metrics>,
}

impl IdleClose {
    /// Whether the connection has been idle for the timeout; otherwise the
    /// timer is set to when it might be and `cx` is woken then.
    fn poll_expired(&mut self, activity: &Activity, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match activity.idle_deadline(self.timeout) {
                Some(deadline) if deadline <= now => {
                    self.expired = true;
                    self.metrics.count_idle_connection_closed();
                    return true;
                }
                Some(deadline) => self.timer.as_mut().reset(deadline),
                // A call is in progress: look again a timeout later.
                None => self.timer.as_mut().reset(now + self.timeout),
            }
        }
        false
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.idle.as_ref().is_some_and(|idle| idle.expired) {
            // End of stream: the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        if let Poll::Ready(result) = Pin::new(&mut this.stream).poll_read(cx, buf) {
            return Poll::Ready(result);
        }
        let expired = this
            .idle
            .as_mut()
            .is_some_and(|idle| idle.poll_expired(&this.info.activity, cx));
        if expired {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of `listener`, checked against `limits`, for
/// `serve_with_incoming_shutdown`. Accepting stops when the stream is
/// dropped.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
) -> ReceiverStream<io::Result<Connection>> {
    let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
    let registry = Arc::new(Registry {
        limits,
        counts: Mutex::new(Counts::default()),
        metrics,
    });
    tokio::spawn(async move {
        tokio::select! {
            () = accept_loop(listener, registry, tx.clone()) => {}
            () = tx.closed() => {}
        }
    });
    ReceiverStream::new(rx)
}

/// Accepts connections until `tx` is closed.
async fn accept_loop(
    listener: TcpListener,
    registry: Arc<Registry>,
    tx: mpsc::Sender<io::Result<Connection>>,
) {
    let log = LogSampler::default();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            // The client gave up before the accept: nothing to wait for.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(err) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM…: accepting fails until
                // something is closed; retrying at once would spin.
                if let Some(suppressed) = log.sample("accept failed") {
                    tracing::warn!(
                        error = %err,
                        pause_ms = backoff.as_millis() as u64,
                        suppressed,
                        "cannot accept connections; pausing ({suppressed} more failures not logged since the last line)"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let slot = match registry.admit(remote.ip().to_canonical()) {
            Ok(slot) => slot,
            Err(refusal) => {
                registry.metrics.count_connection_refused(refusal);
                if let Some(suppressed) = log.sample(refusal.as_str()) {
                    tracing::info!(
                        peer = %remote.ip(),
                        reason = refusal.as_str(),
                        suppressed,
                        "connection refused ({suppressed} more refusals not logged since the last line)"
                    );
                }
                drop(stream);
                continue;
            }
        };
        // Without TCP_NODELAY small unary responses wait for delayed ACKs
        // (tens of milliseconds per call on loopback).
        let _ = stream.set_nodelay(true);
        let limits = &registry.limits;
        let connection = Connection {
            info: ConnectionInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(remote),
                activity: Arc::new(Activity {
                    state: Mutex::new((0, Instant::now())),
                }),
            },
            stream,
            idle: limits.idle_timeout.map(|timeout| IdleClose {
                timeout,
                timer: Box::pin(tokio::time::sleep(timeout)),
                expired: false,
                metrics: registry.metrics.clone(),
            }),
            _slot: slot,
        };
        match limits.handshake_timeout {
            None => {
                if tx.send(Ok(connection)).await.is_err() {
                    return;
                }
            }
            Some(timeout) => {
                let tx = tx.clone();
                let metrics = registry.metrics.clone();
                tokio::spawn(async move {
                    // Data, or the end of the stream (then tonic reads the
                    // end and drops the connection).
                    let mut first = [0u8; 1];
                    if tokio::time::timeout(timeout, connection.stream.peek(&mut first))
                        .await
                        .is_ok()
                    {
                        let _ = tx.send(Ok(connection)).await;
                    } else {
                        metrics.count_connection_refused(ConnectionRefusal::HandshakeTimeout);
                    }
                });
            }
        }
    }
}

/// Raises the soft limit of open files to the hard limit, so that the
/// connection cap is what bounds connections; returns the limit now in
/// force (`None` where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        // `rlim_t` is `u64` on Linux and the BSDs.
        #[allow(clippy::useless_conversion)]
        let now = u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX);
        if limit.rlim_cur == before {
            tracing::info!(open_files = now, "open-files limit");
        } else {
            tracing::info!(
                from = before,
                open_files = now,
                "raised the open-files limit"
            );
        }
        Some(now)
    }
    #[cfg(not(unix))]
    {
        None
    }
}
