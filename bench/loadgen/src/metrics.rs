//! Counters shared by every client, a lock-free latency histogram, and percentiles.
//!
//! Clients only do relaxed atomic adds; the coordinator snapshots the counters at the start and
//! the end of the measure window and reports the differences.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Monotonic totals, bumped by the clients.
#[derive(Debug, Default)]
pub struct Counters {
    /// `move` frames sent (frames into the server).
    pub moves_sent: AtomicU64,
    /// Binary frames received by any client (frames out of the server).
    pub frames_received: AtomicU64,
    /// ROOM_STATE_PATCH frames received by active clients.
    pub patches_active: AtomicU64,
    /// ROOM_STATE_PATCH frames received by idle clients.
    pub patches_idle: AtomicU64,
    /// Bytes of binary frames received.
    pub bytes_received: AtomicU64,
    /// Frames whose schema stream the decoder could not follow to the end.
    pub decode_errors: AtomicU64,
    /// Joined clients whose socket closed or failed before the end.
    pub disconnects: AtomicU64,
    /// Send slots skipped because a client fell more than one period behind its schedule.
    pub skipped_sends: AtomicU64,
    /// Moves sent while the measure window was open (each could be echoed once).
    pub window_moves: AtomicU64,
    /// Sends that waited more than 5 ms for the socket.
    pub slow_sends: AtomicU64,
    /// Colyseus PING frames sent by the `--ping-hz` probe (frames into the server).
    pub pings_sent: AtomicU64,
    /// Probe slots skipped because the previous PING was still unanswered.
    pub pings_skipped: AtomicU64,
    /// WebSocket ping control frames received; tungstenite answers each with a pong.
    pub ws_pings: AtomicU64,
    /// Joined clients' sockets that closed or failed, whether the client got back or not: each
    /// one a disconnect its player would have seen.
    pub socket_closes: AtomicU64,
    /// Of those, closes by the server with 4010 (its room moved to another host).
    pub closed_4010: AtomicU64,
    /// Clients back in their room after a 4010 close (`--reconnect-on-4010`).
    pub reconnections: AtomicU64,
    /// Reconnections that failed: the client ended.
    pub reconnect_failures: AtomicU64,
    /// Reconnection attempts after a client's first (the first failed: a 404, a refusal…).
    pub reconnect_retries: AtomicU64,
    /// Moves sent on a socket then closed with 4010 that the room's state after the
    /// reconnection does not show: lost in the move.
    pub moves_lost: AtomicU64,
}

/// A copy of [`Counters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::moves_sent`].
    pub moves_sent: u64,
    /// See [`Counters::frames_received`].
    pub frames_received: u64,
    /// See [`Counters::patches_active`].
    pub patches_active: u64,
    /// See [`Counters::patches_idle`].
    pub patches_idle: u64,
    /// See [`Counters::bytes_received`].
    pub bytes_received: u64,
    /// See [`Counters::decode_errors`].
    pub decode_errors: u64,
    /// See [`Counters::disconnects`].
    pub disconnects: u64,
    /// See [`Counters::skipped_sends`].
    pub skipped_sends: u64,
    /// See [`Counters::pings_sent`].
    pub pings_sent: u64,
    /// See [`Counters::pings_skipped`].
    pub pings_skipped: u64,
    /// See [`Counters::ws_pings`].
    pub ws_pings: u64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The current totals.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            moves_sent: self.moves_sent.load(Relaxed),
            frames_received: self.frames_received.load(Relaxed),
            patches_active: self.patches_active.load(Relaxed),
            patches_idle: self.patches_idle.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            skipped_sends: self.skipped_sends.load(Relaxed),
            pings_sent: self.pings_sent.load(Relaxed),
            pings_skipped: self.pings_skipped.load(Relaxed),
            ws_pings: self.ws_pings.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// Frames into the server: moves and probe PINGs.
    pub fn frames_in(&self) -> u64 {
        self.moves_sent + self.pings_sent
    }

    /// Every WebSocket frame on the clients' sockets, both ways: what [`Snapshot::frames_in`]
    /// counts, every binary frame received, and each WebSocket ping received with the pong
    /// that answers it. What a proxy in the path relays.
    pub fn ws_frames(&self) -> u64 {
        self.frames_in() + self.frames_received + 2 * self.ws_pings
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            moves_sent: self.moves_sent - earlier.moves_sent,
            frames_received: self.frames_received - earlier.frames_received,
            patches_active: self.patches_active - earlier.patches_active,
            patches_idle: self.patches_idle - earlier.patches_idle,
            bytes_received: self.bytes_received - earlier.bytes_received,
            decode_errors: self.decode_errors - earlier.decode_errors,
            disconnects: self.disconnects - earlier.disconnects,
            skipped_sends: self.skipped_sends - earlier.skipped_sends,
            pings_sent: self.pings_sent - earlier.pings_sent,
            pings_skipped: self.pings_skipped - earlier.pings_skipped,
            ws_pings: self.ws_pings - earlier.ws_pings,
        }
    }
}

/// Linear buckets below `2 * SUB`, then `SUB` buckets per power of two: relative error of a
/// reported value (the bucket's midpoint) is at most 1 / (2 * SUB) ≈ 0.2 %: ±0.1 ms at a 50 ms
/// echo, fine enough to tell a proxy's added fraction of a millisecond.
const SUB_BITS: u32 = 8;
const SUB: u64 = 1 << SUB_BITS;
/// Covers values up to 2^41 µs (25 days), far beyond any run.
const GROUPS: usize = 32;
const BUCKETS: usize = (2 * SUB) as usize + GROUPS * SUB as usize;

/// A log-linear histogram of microsecond values with atomic buckets, shared by all clients.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("count", &self.count()).finish()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let group = msb - SUB_BITS; // >= 1
    let mantissa = v >> group; // in [SUB, 2 * SUB)
    let index = 2 * SUB as usize + (group as usize - 1) * SUB as usize + (mantissa - SUB) as usize;
    index.min(BUCKETS - 1)
}

/// The `[low, high]` range of values that land in `index`.
fn bucket_range(index: usize) -> (u64, u64) {
    if index < 2 * SUB as usize {
        return (index as u64, index as u64);
    }
    let rest = index - 2 * SUB as usize;
    let group = (rest / SUB as usize + 1) as u32;
    let mantissa = SUB + (rest % SUB as usize) as u64;
    (mantissa << group, ((mantissa + 1) << group) - 1)
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, value: Duration) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The nearest-rank `q`-quantile (0 < q ≤ 1) in microseconds, as its bucket's midpoint.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = nearest_rank(q, total as usize) as u64 + 1;
        let mut seen = 0;
        for (i, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bucket_range(i);
                return Some((lo + hi) as f64 / 2.0);
            }
        }
        None
    }

    /// The largest recorded value's bucket midpoint, in microseconds.
    pub fn max_us(&self) -> Option<f64> {
        let i = self.buckets.iter().rposition(|b| b.load(Relaxed) > 0)?;
        let (lo, hi) = bucket_range(i);
        Some((lo + hi) as f64 / 2.0)
    }
}

/// The zero-based index of the nearest-rank `q`-quantile among `n` sorted values.
fn nearest_rank(q: f64, n: usize) -> usize {
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    rank.clamp(1, n) - 1
}

/// The nearest-rank `q`-quantile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[nearest_rank(q, sorted.len())])
}

/// p50, p99 and max of a set of values (sorted in place), rounded to 0.01.
pub fn summarize(values: &mut [f64]) -> Option<Quantiles> {
    values.sort_by(f64::total_cmp);
    Some(Quantiles {
        p50: round2(percentile(values, 0.50)?),
        p99: round2(percentile(values, 0.99)?),
        max: round2(*values.last()?),
        count: values.len() as u64,
    })
}

/// Rounds to two decimals, for readable JSON.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Percentiles of a latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Number of values.
    pub count: u64,
}

impl Histogram {
    /// p50, p99 and max in milliseconds, if anything was recorded.
    pub fn quantiles_ms(&self) -> Option<Quantiles> {
        Some(Quantiles {
            p50: round2(self.quantile_us(0.50)? / 1000.0),
            p99: round2(self.quantile_us(0.99)? / 1000.0),
            max: round2(self.max_us()? / 1000.0),
            count: self.count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        let mut odd = vec![3.0, 1.0, 2.0];
        let q = summarize(&mut odd).unwrap();
        assert_eq!((q.p50, q.p99, q.max, q.count), (2.0, 3.0, 3.0, 3));
    }

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_range(i);
            assert_eq!(lo, expected_low, "bucket {i}");
            assert!(hi >= lo);
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi), i);
            expected_low = hi + 1;
        }
    }

    #[test]
    fn histogram_quantiles_are_within_half_a_percent() {
        let h = Histogram::default();
        // 1 ms .. 100 ms, one value per 10 µs.
        for us in (1_000..=100_000u64).step_by(10) {
            h.record(Duration::from_micros(us));
        }
        let exact: Vec<f64> = (1_000..=100_000u64).step_by(10).map(|v| v as f64).collect();
        for q in [0.5, 0.9, 0.99] {
            let got = h.quantile_us(q).unwrap();
            let want = percentile(&exact, q).unwrap();
            assert!((got - want).abs() / want < 0.005, "q{q}: {got} vs {want}");
        }
        let ms = h.quantiles_ms().unwrap();
        assert!((ms.max - 100.0).abs() < 2.0);
        assert_eq!(ms.count, exact.len() as u64);
        assert!(Histogram::default().quantiles_ms().is_none());
    }

    #[test]
    fn small_values_are_exact_and_huge_values_clamp() {
        let h = Histogram::default();
        h.record(Duration::from_micros(3));
        assert_eq!(h.quantile_us(1.0), Some(3.0));
        h.record(Duration::from_secs(u64::MAX / 4));
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn snapshots_subtract() {
        let c = Counters::default();
        Counters::bump(&c.moves_sent);
        let a = c.snapshot();
        Counters::bump(&c.moves_sent);
        Counters::bump(&c.patches_idle);
        Counters::bump(&c.pings_sent);
        Counters::bump(&c.ws_pings);
        Counters::bump(&c.frames_received);
        let d = c.snapshot().since(&a);
        assert_eq!((d.moves_sent, d.patches_idle, d.frames_received), (1, 1, 1));
        assert_eq!((d.frames_in(), d.ws_frames()), (2, 5));
    }
}
