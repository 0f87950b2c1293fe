//! The route table: which processes are alive, where each one is reached, and how loaded it is.
//!
//! Readers (every request) load the table without locking; discovery replaces it whole on each
//! resync and patches it on announcements. Load is the client count a host last reported plus
//! the matchmaking requests sent to it since, so a burst of joins between two heartbeats spreads
//! over the hosts instead of piling onto the one that looked emptiest.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// How long a process that refused a connection is left out of matchmaking.
pub const SUSPECT_FOR: Duration = Duration::from_secs(3);

/// One live process.
#[derive(Debug)]
pub struct Route {
    /// Process id.
    pub process_id: String,
    /// Where it is reached (`host:port`).
    pub endpoint: String,
    /// Clients it reported at its last heartbeat.
    reported_clients: usize,
    /// Matchmaking requests sent to it since that report.
    routed: AtomicUsize,
    /// Milliseconds since the table's epoch until which it is left out of matchmaking (0: never).
    suspect_until: AtomicU64,
    /// It is draining: its rooms still get their sockets, but matchmaking leaves it out.
    draining: bool,
}

impl Route {
    /// A route to `process_id` at `endpoint`, which reported `clients`.
    pub fn new(process_id: String, endpoint: String, clients: usize) -> Self {
        Self {
            process_id,
            endpoint,
            reported_clients: clients,
            routed: AtomicUsize::new(0),
            draining: false,
            suspect_until: AtomicU64::new(0),
        }
    }

    /// Whether the process is draining.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The same route, marked draining (or not).
    pub fn draining(mut self, draining: bool) -> Self {
        self.draining = draining;
        self
    }

    fn load(&self) -> usize {
        self.reported_clients + self.routed.load(Ordering::Relaxed)
    }
}

/// The live processes, by id.
pub struct Routes {
    table: ArcSwap<HashMap<String, Arc<Route>>>,
    /// Breaks ties between equally loaded processes in turn.
    turn: AtomicUsize,
    epoch: Instant,
}

impl Default for Routes {
    fn default() -> Self {
        Self { table: ArcSwap::default(), turn: AtomicUsize::new(0), epoch: Instant::now() }
    }
}

impl Routes {
    /// The route to a process, if it is alive.
    pub fn get(&self, process_id: &str) -> Option<Arc<Route>> {
        self.table.load().get(process_id).cloned()
    }

    /// How many processes are alive.
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Whether no process is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of the live processes, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.table.load().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Replaces the whole table (a resync). A process that was suspect and is still listed
    /// with the same endpoint stays suspect until its time is up.
    pub fn replace(&self, routes: Vec<Route>) {
        let old = self.table.load();
        let table = routes
            .into_iter()
            .map(|route| {
                if let Some(prev) = old.get(&route.process_id)
                    && prev.endpoint == route.endpoint
                {
                    route.suspect_until.store(prev.suspect_until.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                (route.process_id.clone(), Arc::new(route))
            })
            .collect();
        self.table.store(Arc::new(table));
    }

    /// Adds or replaces one process (an announcement that it joined).
    pub fn insert(&self, route: Route) {
        let route = Arc::new(route);
        self.table.rcu(|table| {
            let mut table = HashMap::clone(table);
            table.insert(route.process_id.clone(), route.clone());
            table
        });
    }

    /// Forgets one process (an announcement that it left). Returns whether it was known.
    pub fn remove(&self, process_id: &str) -> bool {
        let mut removed = false;
        self.table.rcu(|table| {
            let mut table = HashMap::clone(table);
            removed = table.remove(process_id).is_some();
            table
        });
        removed
    }

    /// Leaves a process out of matchmaking for [`SUSPECT_FOR`] (it refused a connection).
    pub fn suspect(&self, route: &Route) {
        let until = self.now_ms() + SUSPECT_FOR.as_millis() as u64;
        route.suspect_until.store(until, Ordering::Relaxed);
    }

    /// The least loaded live process for a matchmaking request, skipping suspects and
    /// `exclude`; equally loaded processes take turns. The pick counts towards its load.
    pub fn pick(&self, exclude: &[String]) -> Option<Arc<Route>> {
        let table = self.table.load();
        let now = self.now_ms();
        // Each load is read once: concurrent picks move them, and the minimum must stay among
        // the candidates it was taken from.
        let mut candidates: Vec<(usize, &Arc<Route>)> = table
            .values()
            .filter(|r| r.suspect_until.load(Ordering::Relaxed) <= now && !r.draining)
            .filter(|r| !exclude.contains(&r.process_id))
            .map(|r| (r.load(), r))
            .collect();
        let least = candidates.iter().map(|(load, _)| *load).min()?;
        candidates.retain(|(load, _)| *load == least);
        candidates.sort_by(|a, b| a.1.process_id.cmp(&b.1.process_id));
        let chosen = candidates[self.turn.fetch_add(1, Ordering::Relaxed) % candidates.len()].1.clone();
        chosen.routed.fetch_add(1, Ordering::Relaxed);
        Some(chosen)
    }

    fn now_ms(&self) -> u64 {
        // Starts at 1 so that 0 means "never suspect".
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(loads: &[(&str, usize)]) -> Routes {
        let routes = Routes::default();
        routes
            .replace(loads.iter().map(|(id, n)| Route::new(id.to_string(), format!("{id}:1"), *n)).collect());
        routes
    }

    #[test]
    fn a_draining_process_is_never_picked() {
        let r = Routes::default();
        r.replace(vec![
            Route::new("a".into(), "a:1".into(), 0).draining(true),
            Route::new("b".into(), "b:1".into(), 50),
        ]);
        assert!((0..10).all(|_| r.pick(&[]).unwrap().process_id == "b"));
        assert!(r.pick(&["b".to_string()]).is_none());
    }

    #[test]
    fn picks_the_least_loaded_and_takes_turns_on_ties() {
        let r = routes(&[("a", 5), ("b", 0), ("c", 0)]);
        let picks: Vec<String> = (0..6).map(|_| r.pick(&[]).unwrap().process_id.clone()).collect();
        // b and c share the load until they reach a's 5 clients... then all three take turns.
        assert_eq!(&picks[..2], &["b", "c"]);
        assert!(picks.iter().filter(|p| *p == "b").count() >= 2);
        assert!(picks.iter().filter(|p| *p == "c").count() >= 2);
        assert!(!picks[..6].contains(&"a".to_string()));
        let more: Vec<String> = (0..30).map(|_| r.pick(&[]).unwrap().process_id.clone()).collect();
        let count = |id: &str| more.iter().filter(|p| *p == id).count();
        assert!(count("a") >= 8 && count("b") >= 8 && count("c") >= 8, "{more:?}");
    }

    #[test]
    fn suspects_and_exclusions_are_skipped_and_a_resync_keeps_suspicion() {
        let r = routes(&[("a", 0), ("b", 10)]);
        r.suspect(&r.get("a").unwrap());
        assert_eq!(r.pick(&[]).unwrap().process_id, "b");
        assert!(r.pick(&["b".to_string()]).is_none());
        r.replace(vec![Route::new("a".into(), "a:1".into(), 0), Route::new("b".into(), "b:1".into(), 10)]);
        assert_eq!(r.pick(&[]).unwrap().process_id, "b");
        // A process back at another endpoint (restarted) is a new process as far as suspicion goes.
        r.replace(vec![Route::new("a".into(), "a:2".into(), 0)]);
        assert_eq!(r.pick(&[]).unwrap().process_id, "a");
    }

    #[test]
    fn announcements_patch_the_table() {
        let r = routes(&[("a", 0)]);
        r.insert(Route::new("b".into(), "b:1".into(), 0));
        assert_eq!(r.ids(), ["a", "b"]);
        assert!(r.remove("a"));
        assert!(!r.remove("a"));
        assert_eq!(r.ids(), ["b"]);
        assert!(r.get("a").is_none());
        assert_eq!(r.get("b").unwrap().endpoint, "b:1");
    }

    #[test]
    fn concurrent_picks_always_find_a_process() {
        // Picks on other threads move the loads while this one compares them; a pick must never
        // come back empty (or panic) while processes are live.
        let r = Arc::new(routes(&[("a", 0), ("b", 0), ("c", 0)]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..20_000).filter(|_| r.pick(&[]).is_some()).count())
            })
            .collect();
        let picked: usize = threads.into_iter().map(|t| t.join().expect("no pick panicked")).sum();
        assert_eq!(picked, 80_000);
    }
}
