//! [`TestRoom`]'s clients as the host treats them: a seat only while the room has one free, and
//! the state frames each connected client gets (the full state when it joins or comes back, a
//! patch after every call), decoded into what it holds as `room.state`.

use std::collections::{BTreeMap, BTreeSet};

use odeon_protocol::abi::{Batch, Effect, Event};

use super::TestRoom;
use super::decoder::{DecodeError, Decoder};
use crate::{Room, RoomError};

/// The error code of a join the host refuses because the room is locked or full (Colyseus's
/// `MATCHMAKE_INVALID_ROOM_ID`, as for `joinById`).
pub const ROOM_LOCKED: u32 = 522;

/// What the test host knows of the clients' side.
#[derive(Default)]
pub(super) struct Clients {
    /// The v5 reflection handshake the room announced, if it has state.
    pub(super) reflection: Option<Vec<u8>>,
    /// Each connected client's view of the state, or why its frames stopped decoding.
    views: BTreeMap<String, Result<Decoder, DecodeError>>,
    /// Dropped clients whose seats the room keeps for their reconnection.
    away: BTreeSet<String>,
}

impl<R: Room> TestRoom<R> {
    /// The state as client `session_id` holds it: its `room.state.toJSON()`, decoded from the
    /// frames it got (the schema handshake, the full state when it joined or came back, then
    /// every patch), as JSON text. Compare it with [`TestRoom::state_json`], or parse it with
    /// `serde_json`.
    ///
    /// # Panics
    ///
    /// If the room has no state, `session_id` is not connected, or its frames did not decode
    /// (the panic says why).
    pub fn client_state(&self, session_id: &str) -> String {
        assert!(self.clients.reflection.is_some(), "room {:?} has no synchronised state", R::NAME);
        match self.clients.views.get(session_id) {
            Some(Ok(decoder)) => decoder.to_json(),
            Some(Err(err)) => panic!("{session_id}'s state frames did not decode: {err}"),
            None => panic!("{session_id} is not connected to room {:?}", R::NAME),
        }
    }

    /// Why the host would refuse a new seat now: the room is locked, or as many clients as
    /// `max_clients` are joined or away with a reconnection window, as the host counts them.
    pub(super) fn seat_refusal(&self) -> Option<RoomError> {
        let seats = self.runtime.ctx().clients().len() + self.clients.away.len();
        let full = self.state.max_clients.is_some_and(|max| max > 0 && seats >= max as usize);
        (self.state.locked || full)
            .then(|| RoomError::with_code(ROOM_LOCKED, format!("room \"{}\" is locked", Self::ROOM_ID)))
    }

    /// `session_id` joined or came back: it gets the whole state, as its first frame.
    pub(super) fn connect_client(&mut self, session_id: &str) {
        self.clients.away.remove(session_id);
        let Some(reflection) = self.clients.reflection.clone() else { return };
        let view = Decoder::new(&reflection).and_then(|mut decoder| {
            for bytes in self.host_call(Event::FullState) {
                decoder.apply(&bytes)?;
            }
            Ok(decoder)
        });
        self.clients.views.insert(session_id.to_owned(), view);
    }

    /// `session_id`'s connection closed; `away` if the room keeps its seat for a reconnection.
    pub(super) fn disconnect_client(&mut self, session_id: &str, away: bool) {
        self.clients.views.remove(session_id);
        if away {
            self.clients.away.insert(session_id.to_owned());
        } else {
            self.clients.away.remove(session_id);
        }
    }

    /// Sends every connected client the patch of what changed, as the host's next patch tick
    /// would.
    pub(super) fn patch_clients(&mut self) {
        if self.disposed || self.clients.reflection.is_none() || self.clients.views.is_empty() {
            return;
        }
        for bytes in self.host_call(Event::Patch) {
            for view in self.clients.views.values_mut() {
                if let Ok(decoder) = view
                    && let Err(err) = decoder.apply(&bytes)
                {
                    *view = Err(err);
                }
            }
        }
    }

    /// Hands the room an event the host sends on its own (a full state or a patch) and returns
    /// the state frames it answered with; the room's other effects are recorded as usual, but
    /// not `StateChanged`, which the host handles itself.
    fn host_call(&mut self, event: Event) -> Vec<Vec<u8>> {
        let effects = self.runtime.handle_batch(Batch { now_ms: self.now_ms, events: vec![event] });
        let mut frames = Vec::new();
        for effect in effects.effects {
            match effect {
                Effect::FullState(bytes) | Effect::StatePatch(bytes) => frames.push(bytes),
                Effect::StateChanged => {}
                other => self.record(other),
            }
        }
        frames
    }
}
