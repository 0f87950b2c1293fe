//! [`TestRoom`]'s presence and room queries: the in-memory store that answers what the room
//! asks right after the call that asked it (see the [module docs](super)), and what a test
//! does as the rest of the world.

use odeon_protocol::abi::{Effect, Event, Listing, PresenceOp, PresenceValue};

use super::store::Caller;
use super::{MAX_ANSWER_ROUNDS, Request, TestRoom};
use crate::presence::IntoKey;
use crate::{OpId, Room};

impl<R: Room> TestRoom<R> {
    /// Runs a presence operation as another room of this type would, and returns its answer.
    ///
    /// Use it to seed or inspect the store, or to publish to the room: a publication on a topic
    /// the room subscribed to reaches its [`Room::on_presence_message`] before this returns.
    /// Subscribing here does not subscribe the room.
    pub fn run_presence(&mut self, op: PresenceOp) -> Result<PresenceValue, String> {
        self.run_presence_as(R::NAME, op)
    }

    /// Like [`TestRoom::run_presence`], for a room of type `room_type`, whose local keys and
    /// topics are not the room's.
    pub fn run_presence_as(&mut self, room_type: &str, op: PresenceOp) -> Result<PresenceValue, String> {
        let caller = Caller { room_type, under_test: false };
        let (answer, message) = self.presence.apply(op, caller, self.now_ms);
        if let Some(message) = message {
            self.events(vec![message]);
        }
        answer
    }

    /// Another room of this type publishes `message` on `topic`; returns whether the room had
    /// subscribed to `topic`, and so received it.
    ///
    /// To deliver a message whatever the subscriptions, send [`Event::PresenceMessage`] with
    /// [`TestRoom::events`].
    pub fn deliver_presence_message(&mut self, topic: impl IntoKey, message: impl Into<String>) -> bool {
        let op = PresenceOp::Publish { topic: topic.into_key(), message: message.into() };
        self.run_presence(op) == Ok(PresenceValue::Int(1))
    }

    /// Whether the room is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: impl IntoKey) -> bool {
        self.presence.is_subscribed(&topic.into_key(), R::NAME)
    }

    /// The listings room queries answer with (filtered by the queried name); none by default.
    /// The room itself is only listed if it is among them.
    pub fn set_rooms(&mut self, listings: Vec<Listing>) {
        self.listings = listings;
    }

    /// Keeps the answers to the room's presence operations and room queries back from now on,
    /// until [`TestRoom::release_answers`]; [`TestRoom::held_ops`] lists them.
    pub fn hold_answers(&mut self) {
        self.holding = true;
    }

    /// Answers every held operation, as of now and in the order the room asked, and goes back to
    /// answering right away.
    pub fn release_answers(&mut self) {
        self.holding = false;
        self.settle();
    }

    /// The operations waiting for an answer while answers are held, in the order the room asked.
    pub fn held_ops(&self) -> Vec<OpId> {
        self.asked.iter().map(|&(id, _)| OpId::new(id)).collect()
    }

    /// Answers presence operation `op` with `result` instead of the store (which it leaves
    /// untouched), e.g. to fail it; a held operation is no longer held.
    pub fn answer_presence(&mut self, op: OpId, result: Result<PresenceValue, String>) {
        self.asked.retain(|&(id, _)| id != op.as_u64());
        self.events(vec![Event::PresenceResult { op_id: op.as_u64(), result }]);
    }

    /// Answers room query `op` with `result` instead of [`TestRoom::set_rooms`]'s listings; a
    /// held query is no longer held.
    pub fn answer_rooms(&mut self, op: OpId, result: Result<Vec<Listing>, String>) {
        self.asked.retain(|&(id, _)| id != op.as_u64());
        self.events(vec![Event::Rooms { op_id: op.as_u64(), result }]);
    }

    /// The presence operations the room issued, in order, since the last
    /// [`TestRoom::take_effects`].
    pub fn presence_ops(&self) -> Vec<PresenceOp> {
        self.recorded_where(|e| match e {
            Effect::Presence { op, .. } => Some(op.clone()),
            _ => None,
        })
    }

    /// The room type names of the room queries the room issued (`None`: every type), in order,
    /// since the last [`TestRoom::take_effects`].
    pub fn room_queries(&self) -> Vec<Option<String>> {
        self.recorded_where(|e| match e {
            Effect::QueryRooms { name, .. } => Some(name.clone()),
            _ => None,
        })
    }

    /// Answers what the room asked, round after round, unless answers are held. A disposed room
    /// gets no answers and loses its subscriptions, though its last operations still change the
    /// store, as on a host.
    pub(super) fn settle(&mut self) {
        if self.disposed {
            self.answer_asked();
            self.presence.unsubscribe_all();
            return;
        }
        for _ in 0..MAX_ANSWER_ROUNDS {
            if self.asked.is_empty() || self.holding {
                return;
            }
            let answers = self.answer_asked();
            self.deliver(answers);
        }
        panic!("room {:?} keeps asking for presence or rooms in answer to every answer", R::NAME);
    }

    /// Runs everything the room asked, in order: the events that answer it.
    fn answer_asked(&mut self) -> Vec<Event> {
        let caller = Caller { room_type: R::NAME, under_test: true };
        let mut answers = Vec::new();
        for (op_id, request) in std::mem::take(&mut self.asked) {
            match request {
                Request::Presence(op) => {
                    let (result, message) = self.presence.apply(op, caller, self.now_ms);
                    answers.extend(message);
                    answers.push(Event::PresenceResult { op_id, result });
                }
                Request::Rooms(name) => {
                    let listed = |l: &&Listing| name.as_ref().is_none_or(|name| l.name == *name);
                    let result = Ok(self.listings.iter().filter(listed).cloned().collect());
                    answers.push(Event::Rooms { op_id, result });
                }
            }
        }
        answers
    }
}
