//! The room's synchronised state as the runtime keeps it: a plain value in [`Ctx::state`] for
//! the hooks, and the encoder that follows it for the clients.
//!
//! The state lives outside its encoder while hooks run, so a room changes it as any Rust value
//! (`ctx.state.turn = ..`), with no guard to hold and no setter to call. For each encoding the
//! runtime puts it back ([`StateEncoder::attach`]), which compares the root's fields with what
//! they were and records those that differ; children and collections record their own changes
//! wherever the state is.
//!
//! [`Ctx::state`]: crate::Ctx::state

use std::any::TypeId;

use odeon_schema::{Schema, SchemaVersion, StateCarry, StateEncoder};

/// Whether `S` is a state at all: `()` is a room without one, announced with the "none"
/// serializer and never encoded.
pub(crate) fn is_synced<S: Schema>() -> bool {
    TypeId::of::<S>() != TypeId::of::<()>()
}

/// A room's state encoder; the state itself is the caller's (the context's).
pub(crate) struct Synced<S: Schema> {
    encoder: StateEncoder<S>,
}

impl<S: Schema + Default> Synced<S> {
    /// Starts encoding `state`, which stays where it is: the encoder keeps a stand-in.
    pub(crate) fn start(state: &mut S) -> Self {
        let mut encoder = StateEncoder::new(std::mem::take(state));
        encoder.detach(state);
        Self { encoder }
    }

    /// Continues the stream the previous version's encoder sent (a live migration): fails when
    /// `state` is not what the clients hold.
    pub(crate) fn adopt(state: &mut S, carry: &StateCarry) -> Result<Self, String> {
        let mut encoder = StateEncoder::new(std::mem::take(state));
        let adopted = encoder.adopt(carry).map_err(|e| e.to_string());
        encoder.detach(state);
        adopted.map(|()| Self { encoder })
    }

    /// The reflection handshakes: the v3/v4 layout (0.16 and 0.17 clients), then v5 (0.18).
    pub(crate) fn reflections() -> (Vec<u8>, Vec<u8>) {
        (StateEncoder::<S>::reflection(SchemaVersion::V4), StateEncoder::<S>::reflection(SchemaVersion::V5))
    }

    /// Runs `f` on the encoder with `state` in it, then takes `state` out again.
    pub(crate) fn with<T>(&mut self, state: &mut S, f: impl FnOnce(&mut StateEncoder<S>) -> T) -> T {
        self.encoder.attach(state);
        let out = f(&mut self.encoder);
        self.encoder.detach(state);
        out
    }
}

impl<S: Schema> std::fmt::Debug for Synced<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Synced(..)")
    }
}
