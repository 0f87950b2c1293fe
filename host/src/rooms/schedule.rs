//! A room's clock: the patch and simulation grids and the guest's timers, all drift-free.
//!
//! Patches and ticks fall on fixed grids that start when the room is created, so 20 Hz is 20.0
//! per second however late a wake-up was, and a tick and a patch due at the same instant are
//! delivered in one guest call. A room that falls behind skips grid points rather than bursting.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// What is due now.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Due {
    /// Guest timers that fired, in order.
    pub timers: Vec<u64>,
    /// A simulation tick, with the milliseconds since the previous one.
    pub tick_dt_ms: Option<f64>,
    /// The patch interval elapsed with a patch wanted.
    pub patch: bool,
}

/// A schedule as it moves with a room to another host: the grids restart there, the timers keep
/// what was left of their delays.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ScheduleImage {
    /// Patch interval, ms (0: off).
    pub patch_ms: u64,
    /// A patch was wanted.
    pub patch_wanted: bool,
    /// Simulation interval, ms.
    pub tick_ms: Option<u64>,
    /// Guest timers in firing order: id, ms until due, repeat interval in ms.
    pub timers: Vec<(u64, u64, Option<u64>)>,
}

pub(super) struct Schedule {
    origin: Instant,
    patch_every: Duration,
    next_patch: Option<Instant>,
    last_patch: Option<Instant>,
    tick_every: Option<Duration>,
    next_tick: Option<Instant>,
    last_tick: Instant,
    /// Guest timers by due time, then creation order: (id, repeat interval).
    timers: BTreeMap<(Instant, u64), (u64, Option<Duration>)>,
    seq: u64,
}

impl Schedule {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            origin: now,
            patch_every: Duration::from_millis(50),
            next_patch: None,
            last_patch: None,
            tick_every: None,
            next_tick: None,
            last_tick: now,
            timers: BTreeMap::new(),
            seq: 0,
        }
    }

    /// The first grid point of `every` after `after` (and not before `now`).
    fn grid_after(&self, every: Duration, after: Instant, now: Instant) -> Instant {
        let from = after.max(now);
        let since = from.saturating_duration_since(self.origin).as_nanos();
        let step = every.as_nanos().max(1);
        let mut k = since.div_ceil(step);
        let at = |k: u128| self.origin + Duration::from_nanos((k * step) as u64);
        if at(k) <= after {
            k += 1;
        }
        at(k)
    }

    /// The patch interval in whole milliseconds (0: off).
    pub(super) fn patch_rate_ms(&self) -> u32 {
        self.patch_every.as_millis().min(u32::MAX as u128) as u32
    }

    /// Whether patches are on.
    pub(super) fn patches_on(&self) -> bool {
        !self.patch_every.is_zero()
    }

    pub(super) fn set_patch_rate(&mut self, every: Duration, now: Instant) {
        let wanted = self.next_patch.is_some();
        self.patch_every = every;
        self.next_patch = None;
        if wanted {
            self.want_patch(now);
        }
    }

    /// Asks for a patch at the next grid point; idle rooms get no patch wake-ups.
    pub(super) fn want_patch(&mut self, now: Instant) {
        if self.next_patch.is_some() || self.patch_every.is_zero() {
            return;
        }
        let after = self.last_patch.unwrap_or(self.origin - Duration::from_nanos(1));
        self.next_patch = Some(self.grid_after(self.patch_every, after, now));
    }

    pub(super) fn set_simulation_interval(&mut self, every: Option<Duration>, now: Instant) {
        self.tick_every = every;
        self.last_tick = now;
        self.next_tick = every.map(|d| self.grid_after(d, now, now));
    }

    pub(super) fn set_timer(&mut self, id: u64, delay: Duration, repeat: bool, now: Instant) {
        self.seq += 1;
        self.timers.insert((now + delay, self.seq), (id, repeat.then_some(delay)));
    }

    /// Timers pending.
    pub(super) fn timer_count(&self) -> usize {
        self.timers.len()
    }

    pub(super) fn clear_timer(&mut self, id: u64) {
        self.timers.retain(|_, (t, _)| *t != id);
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|(t, _)| *t);
        [timer, self.next_tick, self.next_patch].into_iter().flatten().min()
    }

    /// The schedule, for the room's move to another host.
    pub(super) fn export(&self, now: Instant) -> ScheduleImage {
        ScheduleImage {
            patch_ms: self.patch_every.as_millis() as u64,
            patch_wanted: self.next_patch.is_some(),
            tick_ms: self.tick_every.map(|d| d.as_millis() as u64),
            timers: self
                .timers
                .iter()
                .map(|((at, _), (id, every))| {
                    (
                        *id,
                        at.saturating_duration_since(now).as_millis() as u64,
                        every.map(|d| d.as_millis() as u64),
                    )
                })
                .collect(),
        }
    }

    /// The schedule of a room that moved here, its grids starting now.
    pub(super) fn import(image: &ScheduleImage, now: Instant) -> Self {
        let mut s = Self::new(now);
        s.patch_every = Duration::from_millis(image.patch_ms);
        s.set_simulation_interval(image.tick_ms.map(Duration::from_millis), now);
        for &(id, due_in, every) in &image.timers {
            s.seq += 1;
            s.timers
                .insert((now + Duration::from_millis(due_in), s.seq), (id, every.map(Duration::from_millis)));
        }
        if image.patch_wanted {
            s.want_patch(now);
        }
        s
    }

    /// Takes everything due at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        while let Some(entry) = self.timers.first_entry() {
            let at = entry.key().0;
            if at > now {
                break;
            }
            let (id, repeat) = entry.remove();
            due.timers.push(id);
            if let Some(every) = repeat {
                // Drift-free: the next firing is one interval after this one was due.
                let mut next = at + every;
                if next <= now {
                    next = now + every;
                }
                self.seq += 1;
                self.timers.insert((next, self.seq), (id, Some(every)));
            }
        }
        if let (Some(at), Some(every)) = (self.next_tick, self.tick_every)
            && at <= now
        {
            due.tick_dt_ms = Some(now.duration_since(self.last_tick).as_secs_f64() * 1000.0);
            self.last_tick = now;
            self.next_tick = Some(self.grid_after(every, at, now));
        }
        if self.next_patch.is_some_and(|at| at <= now) {
            self.last_patch = self.next_patch.take();
            due.patch = true;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_stay_on_their_grid_however_late_the_wake_up() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.want_patch(t0 + Duration::from_millis(3));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(50)));
        // Woken 7 ms late: the next patch is still at 100 ms, not 107.
        let due = s.take_due(t0 + Duration::from_millis(57));
        assert!(due.patch);
        s.want_patch(t0 + Duration::from_millis(57));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(100)));
        // Nothing wanted: no wake-up at all.
        let _ = s.take_due(t0 + Duration::from_millis(100));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_tick_and_a_patch_on_the_same_grid_are_due_together() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.set_simulation_interval(Some(Duration::from_millis(50)), t0);
        s.want_patch(t0 + Duration::from_millis(10));
        let due = s.take_due(t0 + Duration::from_millis(51));
        assert!(due.patch);
        assert!(due.tick_dt_ms.is_some_and(|dt| (dt - 51.0).abs() < 0.01));
        // The next tick is on the grid (100 ms) although this one ran at 51 ms.
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn twenty_hertz_is_twenty_per_second() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.set_simulation_interval(Some(Duration::from_millis(50)), t0);
        let mut now = t0;
        let mut ticks = 0;
        while now < t0 + Duration::from_secs(10) {
            // Every wake-up is 4 ms late.
            now = s.next_deadline().unwrap() + Duration::from_millis(4);
            if s.take_due(now).tick_dt_ms.is_some() {
                ticks += 1;
            }
        }
        assert_eq!(ticks, 200);
    }

    #[test]
    fn a_late_room_skips_grid_points_instead_of_bursting() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.set_simulation_interval(Some(Duration::from_millis(50)), t0);
        assert!(s.take_due(t0 + Duration::from_millis(260)).tick_dt_ms.is_some());
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(300)));
    }

    #[test]
    fn a_moved_schedule_keeps_what_was_left_of_each_timer() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.set_patch_rate(Duration::from_millis(100), t0);
        s.set_simulation_interval(Some(Duration::from_millis(50)), t0);
        s.set_timer(1, Duration::from_millis(300), false, t0);
        s.set_timer(2, Duration::from_millis(80), true, t0);
        let image = s.export(t0 + Duration::from_millis(30));
        assert_eq!(image.timers, vec![(2, 50, Some(80)), (1, 270, None)]);
        assert_eq!((image.patch_ms, image.tick_ms), (100, Some(50)));
        // Elsewhere, later: the same delays from the moment it arrives.
        let t1 = t0 + Duration::from_secs(7);
        let mut moved = Schedule::import(&image, t1);
        assert_eq!(moved.take_due(t1 + Duration::from_millis(50)).timers, vec![2]);
        assert_eq!(moved.take_due(t1 + Duration::from_millis(130)).timers, vec![2]);
        // The interval keeps its phase (210 ms), the one-shot its 270 ms.
        assert_eq!(moved.take_due(t1 + Duration::from_millis(270)).timers, vec![2, 1]);
        assert_eq!(moved.patch_rate_ms(), 100);
    }

    #[test]
    fn repeating_timers_keep_their_phase() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.set_timer(7, Duration::from_millis(100), true, t0);
        assert_eq!(s.take_due(t0 + Duration::from_millis(103)).timers, vec![7]);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(200)));
        s.clear_timer(7);
        assert_eq!(s.next_deadline(), None);
    }
}
