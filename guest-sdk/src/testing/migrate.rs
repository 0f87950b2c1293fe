//! [`TestRoom::migrate`]: a live migration to another version of the room's code, as the host
//! runs it, so room authors can test their migration hooks natively.

use odeon_protocol::abi::{Event, MigrateIn, MigrateInResult, MigrateOut};

use super::TestRoom;
use crate::Room;
use crate::rt::Runtime;

impl<R: Room> TestRoom<R> {
    /// Moves the room to `R2` (usually the same room type built from newer code) as a deploy
    /// with `?migrate=1` does: the pending state patch goes out first, then `R`'s
    /// [`Room::migrate_out`] and `R2`'s [`Room::migrate_in`] run, and the room continues as a
    /// `TestRoom<R2>` with its clients, timers, presence and recorded effects. `Err` says why
    /// the host would keep the room on `R` (which this call consumes).
    pub fn migrate<R2: Room>(mut self) -> Result<TestRoom<R2>, String> {
        // The host patches before it takes the snapshot: the clients hold the state it carries.
        self.deliver(vec![Event::Patch]);
        let snapshot = match self.runtime.migrate_out() {
            MigrateOut::Ready(snapshot) => snapshot,
            MigrateOut::Refused(reason) => return Err(reason),
        };
        let mut runtime = Runtime::<R2>::new();
        let input = MigrateIn { now_ms: self.now_ms, from_hash: "test".into(), snapshot };
        let effects = match runtime.migrate_in(input) {
            MigrateInResult::Adopted(effects) => effects,
            MigrateInResult::Refused(reason) => return Err(reason),
        };
        let mut moved = TestRoom {
            runtime,
            now_ms: self.now_ms,
            recorded: self.recorded,
            state: self.state,
            timers: self.timers,
            presence: self.presence,
            listings: self.listings,
            asked: self.asked,
            holding: self.holding,
            disposed: self.disposed,
            inputs: self.inputs,
            clients: self.clients,
        };
        for effect in effects.effects {
            moved.record(effect);
        }
        moved.settle();
        Ok(moved)
    }
}
