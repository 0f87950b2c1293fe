//! Synchronised room state: what a room exposes through [`Room::state`](crate::Room::state) so the
//! runtime can announce its serializer, answer full-state requests and produce patches.

use odeon_schema::{Schema, SchemaVersion, StateCarry, StateEncoder};

/// A room's synchronised state, as the runtime drives it. Implemented by
/// [`StateEncoder`](odeon_schema::StateEncoder) for every `#[derive(Schema)]` root, so a room
/// only keeps a `StateEncoder<MyState>` field and returns it from `Room::state`.
pub trait SyncedState {
    /// The reflection handshake in the v3/v4 layout (0.16 and 0.17 clients).
    fn reflection_v4(&self) -> Vec<u8>;
    /// The reflection handshake in the v5 layout (0.18 clients).
    fn reflection_v5(&self) -> Vec<u8>;
    /// The whole state, for a client that just joined.
    fn full_state(&mut self) -> Vec<u8>;
    /// The changes since the previous patch, if any.
    fn patch(&mut self) -> Option<Vec<u8>>;
    /// Whether a patch may have something to send.
    fn has_changes(&self) -> bool;
    /// What the clients hold of this state (refIds, map indexes), for a live migration; fails
    /// while changes are pending since the last patch.
    fn carry(&mut self) -> Result<StateCarry, String>;
    /// Continues the stream another encoder (the previous version's) sent, from `carry`; fails
    /// when this state's schema or content differs from what the clients hold.
    fn adopt(&mut self, carry: &StateCarry) -> Result<(), String>;
}

impl<T: Schema> SyncedState for StateEncoder<T> {
    fn reflection_v4(&self) -> Vec<u8> {
        StateEncoder::<T>::reflection(SchemaVersion::V4)
    }

    fn reflection_v5(&self) -> Vec<u8> {
        StateEncoder::<T>::reflection(SchemaVersion::V5)
    }

    fn full_state(&mut self) -> Vec<u8> {
        StateEncoder::full_state(self)
    }

    fn patch(&mut self) -> Option<Vec<u8>> {
        StateEncoder::patch(self)
    }

    fn has_changes(&self) -> bool {
        StateEncoder::has_changes(self)
    }

    fn carry(&mut self) -> Result<StateCarry, String> {
        StateEncoder::carry(self).map_err(|e| e.to_string())
    }

    fn adopt(&mut self, carry: &StateCarry) -> Result<(), String> {
        StateEncoder::adopt(self, carry).map_err(|e| e.to_string())
    }
}
