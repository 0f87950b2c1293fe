//! Per-address rate limits at the edge: matchmaking requests, and rooms created, per client
//! address, so one address cannot exhaust the room slots or the matchmaker. Keyed token buckets
//! (governor); addresses not seen for a while are forgotten, so the table stays small.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

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
}
