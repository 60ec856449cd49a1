//! Failed authentications per client IP address.
//!
//! After `max_per_minute` failed authentications from one address within a
//! minute (the minute starts at its first failure), every call from that
//! address that needs a credential is refused at once — no database read,
//! no log line per call — until the minute is over. The limit is per
//! address, not per key: a valid key presented from a blocked address is
//! refused too, since telling it apart would take the database read the
//! limit saves. Behind a proxy that connects for every client, all clients
//! share one address; the limit then applies to them together.
//!
//! Memory is bounded: at most [`MAX_TRACKED_PEERS`] addresses are tracked;
//! when that many have failed within the minute, the one with the fewest
//! failures makes room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most addresses tracked at once.
pub const MAX_TRACKED_PEERS: usize = 10_000;

/// How long failures count.
const WINDOW: Duration = Duration::from_secs(60);

/// Failed authentications per address; see the module docs.
#[derive(Debug)]
pub struct FailedAuths {
    /// Failures allowed per window (0: no limit).
    max_per_window: u32,
    /// Address → (start of its window, failures in it).
    peers: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAuths {
    /// At most `max_per_minute` failures per address per minute (0: no limit).
    pub fn new(max_per_minute: u32) -> Self {
        FailedAuths {
            max_per_window: max_per_minute,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `peer` has used up its failures for the current minute.
    pub fn is_blocked(&self, peer: IpAddr) -> bool {
        if self.max_per_window == 0 {
            return false;
        }
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.get(&peer).is_some_and(|(start, failures)| {
            start.elapsed() < WINDOW && *failures >= self.max_per_window
        })
    }

    /// Counts a failed authentication of `peer`.
    pub fn record(&self, peer: IpAddr) {
        if self.max_per_window == 0 {
            return;
        }
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((start, failures)) = peers.get_mut(&peer) {
            if now.duration_since(*start) < WINDOW {
                *failures = failures.saturating_add(1);
            } else {
                *start = now;
                *failures = 1;
            }
            return;
        }
        if peers.len() >= MAX_TRACKED_PEERS {
            peers.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        if peers.len() >= MAX_TRACKED_PEERS
            && let Some(fewest) = peers
                .iter()
                .min_by_key(|(_, (_, failures))| *failures)
                .map(|(peer, _)| *peer)
        {
            peers.remove(&fewest);
        }
        peers.insert(peer, (now, 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_and_others_are_not() {
        let failures = FailedAuths::new(3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..2 {
            failures.record(a);
        }
        assert!(!failures.is_blocked(a), "two of three");
        failures.record(a);
        assert!(failures.is_blocked(a), "three of three");
        assert!(!failures.is_blocked(b), "per address");
        {
            let mut peers = failures.peers.lock().unwrap();
            let start = &mut peers.get_mut(&a).unwrap().0;
            *start = start.checked_sub(WINDOW).unwrap_or(*start);
        }
        assert!(!failures.is_blocked(a), "the minute is over");
        let off = FailedAuths::new(0);
        (0..100).for_each(|_| off.record(a));
        assert!(!off.is_blocked(a));
    }

    #[test]
    fn tracked_addresses_stay_bounded() {
        let failures = FailedAuths::new(2);
        let blocked: IpAddr = [192, 168, 0, 1].into();
        failures.record(blocked);
        failures.record(blocked);
        for i in 0..MAX_TRACKED_PEERS as u32 + 10 {
            failures.record(IpAddr::from(i.to_be_bytes()));
        }
        assert!(failures.peers.lock().unwrap().len() <= MAX_TRACKED_PEERS);
        assert!(
            failures.is_blocked(blocked),
            "the fewest failures make room"
        );
    }
}
