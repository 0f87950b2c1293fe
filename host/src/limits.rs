//! Per-address rate limits at the edge: matchmaking requests, and rooms created, per client
//! address, so one address cannot exhaust the room slots or the matchmaker.
//!
//! [`PerAddress`] is this process's: keyed token buckets (governor); addresses not seen for a
//! while are forgotten, so the table stays small. [`DeploymentLimit`] holds for the whole
//! deployment: every host adds to one count per address in presence (Redis when hosts share it),
//! so an address gets the limit once, not once per host behind the proxy. The local bucket is
//! its first filter and its fallback: a presence that is slow or down never blocks a request,
//! and never lets an address past the local limit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::presence::Presence;

/// How long a limit waits for presence before it decides on the local bucket alone.
const SHARED_TIMEOUT: Duration = Duration::from_millis(300);

/// `count` per `period` per client address across every host sharing `presence`.
pub struct DeploymentLimit {
    name: &'static str,
    count: u32,
    period: Duration,
    local: Arc<PerAddress>,
    presence: Arc<dyn Presence>,
}

impl DeploymentLimit {
    /// `count` per `period` (bursts of `count`), named `name` in presence keys; 0: unlimited.
    pub fn new(name: &'static str, count: u32, period: Duration, presence: Arc<dyn Presence>) -> Self {
        Self { name, count, period, local: PerAddress::new(count, period), presence }
    }

    /// Counts one for `ip`; false when `ip` is over the limit, here or in the deployment.
    ///
    /// The deployment's count is a sliding window over two fixed windows of `period` (the
    /// previous one weighted by how much of it still falls in the last `period`), kept as a
    /// hash per address whose fields are window numbers and which expires two windows after
    /// its last use.
    pub async fn allow(&self, ip: IpAddr) -> bool {
        if self.count == 0 {
            return true;
        }
        if !self.local.allow(ip) {
            return false;
        }
        let period_ms = self.period.as_millis().max(1) as u64;
        let now = crate::clock::now_ms();
        let window = now / period_ms;
        let into = (now % period_ms) as f64 / period_ms as f64;
        let key = format!("odeon:limit:{}:{ip}", self.name);
        // One round trip: the count goes up and the previous window is read at once.
        let (this_window, last_window) = (window.to_string(), window.saturating_sub(1).to_string());
        let counted = async {
            let (current, previous) = tokio::join!(
                self.presence.hincrbyex(&key, &this_window, 1, self.period * 2),
                self.presence.hget(&key, &last_window),
            );
            Ok::<_, crate::presence::PresenceError>((current?, previous?))
        };
        match tokio::time::timeout(SHARED_TIMEOUT, counted).await {
            Ok(Ok((current, previous))) => {
                let previous = previous.and_then(|p| p.parse::<f64>().ok()).unwrap_or(0.0);
                let allowed = current as f64 + previous * (1.0 - into) <= f64::from(self.count);
                if !allowed {
                    // A refused request does not count: an address that keeps knocking is let
                    // in again as soon as what it was allowed leaves the window.
                    let presence = self.presence.clone();
                    let field = window.to_string();
                    let ttl = self.period * 2;
                    tokio::spawn(async move {
                        let _ = presence.hincrbyex(&key, &field, -1, ttl).await;
                    });
                }
                allowed
            }
            Ok(Err(e)) => {
                tracing::debug!(limit = self.name, "shared limit unavailable, local bucket only: {e}");
                true
            }
            Err(_) => {
                tracing::debug!(limit = self.name, "shared limit slow, local bucket only");
                true
            }
        }
    }
}

/// How often addresses whose bucket is full again are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// A rate per client address; `None` inside means unlimited.
pub struct PerAddress {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl PerAddress {
    /// `count` per `period` with bursts of `count`; 0 means unlimited. Spawns the pruner.
    pub fn new(count: u32, period: Duration) -> Arc<Self> {
        let limiter = NonZeroU32::new(count).and_then(|n| {
            let quota = Quota::with_period(period / n.get())?.allow_burst(n);
            Some(RateLimiter::keyed(quota))
        });
        let this = Arc::new(Self { limiter });
        if this.limiter.is_some() {
            let weak = Arc::downgrade(&this);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(PRUNE_EVERY);
                loop {
                    every.tick().await;
                    let Some(this) = weak.upgrade() else { return };
                    if let Some(l) = &this.limiter {
                        l.retain_recent();
                        l.shrink_to_fit();
                    }
                }
            });
        }
        this
    }

    /// Takes one from `ip`'s bucket; false when it is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check_key(&ip).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_address_gets_its_burst_then_waits_for_the_rate() {
        let limits = PerAddress::new(3, Duration::from_millis(300));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!((0..3).all(|_| limits.allow(a)));
        assert!(!limits.allow(a), "a's burst is spent");
        assert!(limits.allow(b), "b has its own bucket");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(limits.allow(a), "one more after a third of the period");
        assert!(!limits.allow(a));
        let unlimited = PerAddress::new(0, Duration::from_secs(1));
        assert!((0..10_000).all(|_| unlimited.allow(a)));
    }

    #[tokio::test]
    async fn two_hosts_sharing_presence_give_an_address_the_limit_once() {
        let presence: Arc<dyn Presence> = Arc::new(crate::presence::LocalPresence::default());
        let one = DeploymentLimit::new("t", 10, Duration::from_secs(60), presence.clone());
        let two = DeploymentLimit::new("t", 10, Duration::from_secs(60), presence.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut allowed = 0;
        for i in 0..30 {
            let host = if i % 2 == 0 { &one } else { &two };
            allowed += usize::from(host.allow(a).await);
        }
        assert_eq!(allowed, 10, "each host alone would have allowed 10");
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(one.allow(b).await, "another address has its own count");
    }
}
