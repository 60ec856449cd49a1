//! Per-tenant request rate limit: one token bucket per tenant, in memory.
//!
//! Each replica keeps its own buckets, so with N replicas a tenant gets up to
//! N times the configured rate; the limit is a guard against a runaway
//! client, not a billing quota. Buckets of idle tenants are dropped once
//! there are many of them, so memory stays bounded by the active tenants.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before full (idle) ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// A token bucket per tenant.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; 0 disables the limit.
    per_second: f64,
    /// Bucket size: the largest burst.
    burst: f64,
    /// Tenant → (tokens, last refill).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` requests per second per tenant, bursts of up to `burst`
    /// (at least 1); `per_second == 0` allows everything.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `tenant`'s bucket; `false` when it is empty.
    pub fn try_acquire(&self, tenant: &str) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
        }
        let (tokens, last) = buckets
            .entry(tenant.to_string())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_bucket_is_empty_per_tenant() {
        let limiter = RateLimiter::new(1, 3);
        assert!((0..3).all(|_| limiter.try_acquire("a")));
        assert!(!limiter.try_acquire("a"));
        assert!(limiter.try_acquire("b"), "tenants have separate buckets");
        let off = RateLimiter::new(0, 0);
        assert!((0..1000).all(|_| off.try_acquire("a")));
    }
}
