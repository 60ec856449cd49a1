//! `GET /metrics` on its own HTTP/1.1 port (`--metrics-listen`), for a
//! Prometheus scraper.
//!
//! A separate port rather than a path on the gRPC port: the gRPC port may
//! need TLS client certificates or sit behind a gRPC-only balancer, while
//! scrapers usually reach pods directly on a plain HTTP port. The endpoint
//! serves nothing else and needs no credentials, so bind it to an address
//! only the monitoring network reaches.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::codegen::Bytes;

use super::Metrics;
use crate::store::Store;

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` until `shutdown` resolves; connections
/// still open then are closed.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
) {
    // Dropping the set at the end aborts the connections still open.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // E.g. out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %err, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let metrics = metrics.clone();
        let store = store.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = answer(&request, &metrics, store.as_ref());
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}

/// The answer to one request: the metrics for `GET /metrics`, 404 for other
/// paths, 405 for other methods.
fn answer(
    request: &Request<Incoming>,
    metrics: &Metrics,
    store: &dyn Store,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if request.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics\n".to_string(),
        )
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".to_string(),
        )
    } else {
        (
            StatusCode::OK,
            CONTENT_TYPE,
            metrics.render(&store.pool_usage()),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
