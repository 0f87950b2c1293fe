//! [`StateEncoder`]: the room's state, its full-state and patch frames.

use std::cell::Ref;
use std::fmt;

use crate::reflection::{SchemaVersion, reflection};
use crate::walk::{Cx, mutations, next_encoder_id};
use crate::{Schema, Shared};

/// Owns a room's state and encodes it for the clients.
///
/// - [`reflection`](StateEncoder::reflection): the handshake for JOIN_ROOM (a function of the
///   type).
/// - [`full_state`](StateEncoder::full_state): the body of ROOM_STATE (after the `0x0e` code)
///   for a client that just joined.
/// - [`patch`](StateEncoder::patch): the body of ROOM_STATE_PATCH (after `0x0f`) with what
///   changed since the previous patch, for every joined client.
///
/// A full state may be taken at any time, also while changes are pending: the next patch is
/// then written so that it applies both to clients that had the previous patch and to clients
/// that started from that full state.
pub struct StateEncoder<T: Schema> {
    pub(crate) root: Shared<T>,
    pub(crate) cx: Cx,
    /// [`crate::walk::mutations`] at the previous patch.
    pub(crate) patched_at: u64,
    pub(crate) patched_once: bool,
    /// The root's value is out with [`StateEncoder::detach`].
    pub(crate) detached: bool,
}

impl<T: Schema> StateEncoder<T> {
    /// Takes ownership of the state. Its refIds are assigned now, depth first, as the official
    /// encoder does when it is constructed.
    pub fn new(state: T) -> Self {
        let root = Shared::new(state);
        let mut cx = Cx::new(next_encoder_id());
        cx.begin_walk(false);
        cx.ensure(root.ident());
        root.node().assign_children(&mut cx);
        Self { root, cx, patched_at: mutations(), patched_once: false, detached: false }
    }

    /// The reflection handshake for this state type.
    pub fn reflection(version: SchemaVersion) -> Vec<u8> {
        reflection::<T>(version)
    }

    /// Reads the state.
    ///
    /// # Panics
    ///
    /// If the state is being changed through [`state_mut`](StateEncoder::state_mut).
    pub fn state(&self) -> Ref<'_, T> {
        self.root.borrow()
    }

    /// Changes the state through its generated `*Mut` type.
    pub fn state_mut(&mut self) -> T::Mut<'_> {
        self.root.borrow_mut()
    }

    /// The root instance's handle.
    pub fn root(&self) -> &Shared<T> {
        &self.root
    }

    /// Takes the root's value out, to be changed as a plain `T`: no guard, no setters
    /// (`state.score = 3`, `state.board[4] = 1`). `value` goes in its place meanwhile (any
    /// instance: it is never encoded) and comes back with [`attach`](StateEncoder::attach),
    /// which compares the root's fields with what they were here and records those that
    /// differ, as their setters would have. Children and collections record their own
    /// changes wherever the value is.
    ///
    /// This is how a room keeps its state between patches: the guest SDK attaches the value
    /// for each encoding and detaches it again.
    ///
    /// # Panics
    ///
    /// If the root is already out.
    pub fn detach(&mut self, value: &mut T) {
        assert!(!self.detached, "the state's root is already detached");
        self.root.detach(value);
        self.detached = true;
    }

    /// Puts the root's value back from `value`, which gets the instance that stood in for it.
    /// See [`detach`](StateEncoder::detach).
    ///
    /// # Panics
    ///
    /// If the root is not out.
    pub fn attach(&mut self, value: &mut T) {
        assert!(self.detached, "the state's root is not detached");
        self.root.attach(value);
        self.detached = false;
    }

    /// Whether the root's value is out ([`detach`](StateEncoder::detach)).
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    pub(crate) fn assert_attached(&self) {
        assert!(!self.detached, "attach the state's root before encoding it");
    }

    /// The whole current state (an `encodeAll`), including changes not yet patched.
    /// Pending changes stay pending.
    pub fn full_state(&mut self) -> Vec<u8> {
        self.assert_attached();
        if !self.patched_once {
            // No client holds anything yet, so this full state can be the first patch itself:
            // every client starts from a full state taken from here on.
            return self.patch().unwrap_or_default();
        }
        // With nothing pending, the full state is what the previous patch left every client.
        self.cx.fs_counted = mutations() != self.patched_at;
        if self.cx.fs_counted {
            self.cx.fs_count += 1;
        }
        let mut out = Vec::new();
        self.cx.begin_walk(false);
        self.cx.run(self.root.node(), &mut out);
        out
    }

    /// What changed since the previous patch; `None` when nothing did.
    pub fn patch(&mut self) -> Option<Vec<u8>> {
        self.assert_attached();
        let mut out = Vec::new();
        self.cx.begin_walk(true);
        self.cx.run(self.root.node(), &mut out);
        self.cx.window += 1;
        self.cx.fs_count = 0;
        self.patched_at = mutations();
        self.patched_once = true;
        (!out.is_empty()).then_some(out)
    }

    /// Whether something may have changed since the previous patch. False means
    /// [`patch`](StateEncoder::patch) would return `None`; true may be conservative (a change
    /// undone before the patch, or a change to an instance outside this state).
    pub fn has_changes(&self) -> bool {
        !self.patched_once || mutations() != self.patched_at
    }

    /// The state as a client's `room.state.toJSON()` shows it, as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.root.node().write_json(&mut out);
        out
    }
}

impl<T: Schema + Default> Default for StateEncoder<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Schema + fmt::Debug> fmt::Debug for StateEncoder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateEncoder").field("state", &self.root).field("cx", &self.cx).finish()
    }
}
