//! What a test reads back from [`TestRoom`]: the room, its clock, and what its effects did.

use serde::de::DeserializeOwned;

use super::TestRoom;
use crate::{IntoMessageType, Payload, Room};
use odeon_protocol::abi::Effect;

impl<R: Room> TestRoom<R> {
    /// The room's own data (what its hooks get as `self`).
    pub fn room(&self) -> &R {
        self.runtime.room().expect("TestRoom only exists for a created room")
    }

    /// The room's synchronised state, as its hooks left it ([`Ctx::state`](crate::Ctx::state)).
    pub fn state(&self) -> &R::State {
        &self.runtime.ctx().state
    }

    /// The room's synchronised state as JSON text, as `room.state.toJSON()` shows it on a client
    /// that got every patch.
    pub fn state_json(&self) -> String {
        odeon_schema::to_json(self.state())
    }

    /// `session_id`'s user data ([`Ctx::user_data`](crate::Ctx::user_data)), while it is in the
    /// room or may reconnect.
    pub fn user_data(&self, session_id: &str) -> Option<&R::UserData> {
        self.runtime.ctx().user_data(session_id)
    }

    /// The test clock, in milliseconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now_ms
    }

    /// The room id the room was created with.
    pub fn room_id(&self) -> &str {
        Self::ROOM_ID
    }

    /// The session ids of the joined clients, in join order.
    pub fn clients(&self) -> Vec<&str> {
        self.runtime.ctx().clients().iter().map(|c| c.session_id()).collect()
    }

    /// Returns the effects recorded since the last call, and forgets them.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.recorded.drain(..).map(|r| r.effect).collect()
    }

    /// The payloads of `kind` messages sent or broadcast to `session_id`, decoded.
    ///
    /// # Panics
    /// When a payload does not decode into `T`.
    pub fn sent_to<T: DeserializeOwned>(&self, session_id: &str, kind: impl IntoMessageType) -> Vec<T> {
        let kind = kind.into_message_type();
        self.messages_to(session_id, &kind, false)
            .map(|payload| {
                Payload::new(payload.unwrap_or_default())
                    .decode()
                    .unwrap_or_else(|err| panic!("{kind:?} message to {session_id}: {err}"))
            })
            .collect()
    }

    /// The raw payloads of `kind` messages sent or broadcast to `session_id`; `None` for a
    /// message without one.
    pub fn raw_sent_to(&self, session_id: &str, kind: impl IntoMessageType) -> Vec<Option<Vec<u8>>> {
        self.messages_to(session_id, &kind.into_message_type(), false).collect()
    }

    /// The bytes of `kind` bytes messages sent or broadcast to `session_id`.
    pub fn bytes_sent_to(&self, session_id: &str, kind: impl IntoMessageType) -> Vec<Vec<u8>> {
        self.messages_to(session_id, &kind.into_message_type(), true).map(Option::unwrap_or_default).collect()
    }

    /// The `(code, message)` of every error sent to `session_id`.
    pub fn errors_to(&self, session_id: &str) -> Vec<(u32, String)> {
        self.recorded_where(|e| match e {
            Effect::Error { to, code, message } if to == session_id => Some((*code, message.clone())),
            _ => None,
        })
    }

    /// Whether the room is locked.
    pub fn is_locked(&self) -> bool {
        self.state.locked
    }

    /// Whether the room is private.
    pub fn is_private(&self) -> bool {
        self.state.private
    }

    /// The room's listing metadata, decoded; `None` if it never set any.
    ///
    /// # Panics
    /// When the metadata does not decode into `T`.
    pub fn metadata<T: DeserializeOwned>(&self) -> Option<T> {
        let bytes = self.state.metadata.clone()?;
        Some(Payload::new(bytes).decode().unwrap_or_else(|err| panic!("room metadata: {err}")))
    }

    /// The maximum number of clients the room set, if it did.
    pub fn max_clients(&self) -> Option<u32> {
        self.state.max_clients
    }

    /// The simulation interval the room set, if it did.
    pub fn simulation_interval(&self) -> Option<u32> {
        self.state.simulation_interval
    }

    /// The reconnection window, in seconds, the room last granted `session_id`.
    pub fn allowed_reconnection(&self, session_id: &str) -> Option<u32> {
        self.state.reconnection.get(session_id).copied()
    }

    /// Whether the room closed `session_id`'s connection: `Some(None)` for a kick without a code,
    /// `Some(Some(code))` for a leave with one.
    pub fn kicked(&self, session_id: &str) -> Option<Option<u16>> {
        self.state.closed.get(session_id).copied()
    }

    /// The close code the room disconnected everyone with, if it did.
    pub fn disconnected(&self) -> Option<u16> {
        self.state.disconnected
    }

    /// How many timers are pending.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}
