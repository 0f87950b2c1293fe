//! [`TestRoom`]'s requests and inputs (Colyseus 0.18): answers to `room.request()`, and each
//! client's inputs buffered as the host buffers them, consumed one per client per fixed step.

use std::collections::{BTreeMap, VecDeque};

use odeon_protocol::abi::{Effect, Event, InputDecl, RequestStatus, StepInput};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{TestRoom, encode};
use crate::{IntoMessageType, Room};

/// How many inputs a client may have waiting, as on the host; older ones are dropped (and
/// count as consumed).
pub const INPUT_BUFFER: usize = 32;

/// The answer a request got.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// OK, REJECTED or ERROR.
    pub status: RequestStatus,
    /// The payload as JSON-like MessagePack bytes, if any.
    pub payload: Option<Vec<u8>>,
}

impl Response {
    /// The payload decoded as `T`; `None` without a payload or when it does not decode.
    pub fn decode<T: DeserializeOwned>(&self) -> Option<T> {
        self.payload.as_deref().and_then(|p| rmp_serde::from_slice(p).ok())
    }
}

/// What the host keeps of a room's inputs.
#[derive(Default)]
pub(super) struct Buffers {
    decl: Option<InputDecl>,
    queued: BTreeMap<String, VecDeque<Vec<u8>>>,
    consumed: BTreeMap<String, u64>,
    requests: u64,
}

impl Buffers {
    pub(super) fn declare(&mut self, decl: InputDecl) {
        self.decl = Some(decl);
    }
}

impl<R: Room> TestRoom<R> {
    /// Sends a request as `session_id` and returns the answer the room gave in that call.
    ///
    /// # Panics
    /// If the room answered nothing (every request is answered once).
    pub fn request<T: Serialize + ?Sized>(
        &mut self,
        session_id: &str,
        kind: impl IntoMessageType,
        payload: &T,
    ) -> Response {
        let request_id = self.next_request_id();
        let event = Event::Request {
            session_id: session_id.to_owned(),
            request_id,
            kind: kind.into_message_type(),
            payload: encode(payload),
        };
        let start = self.recorded.len();
        self.events(vec![event]);
        self.recorded[start..]
            .iter()
            .find_map(|r| match &r.effect {
                Effect::Respond { to, request_id: id, status, payload }
                    if to == session_id && *id == request_id =>
                {
                    Some(Response { status: *status, payload: payload.as_ref().map(|p| p.to_vec()) })
                }
                _ => None,
            })
            .expect("every request is answered in the call that delivers it")
    }

    /// Request ids as the SDK numbers them: from 0, per room.
    fn next_request_id(&mut self) -> f64 {
        let id = self.inputs.requests;
        self.inputs.requests += 1;
        id as f64
    }

    /// The room's input declaration, if it takes inputs.
    pub fn inputs(&self) -> Option<&InputDecl> {
        self.inputs.decl.as_ref()
    }

    /// `session_id` sends one input with these values (the client's whole input, as the host
    /// hands it over after applying the frame's delta).
    ///
    /// # Panics
    /// If the room declared no inputs.
    pub fn input<T: Serialize + ?Sized>(&mut self, session_id: &str, values: &T) {
        assert!(self.inputs.decl.is_some(), "room {:?} declares no inputs", R::NAME);
        let queue = self.inputs.queued.entry(session_id.to_owned()).or_default();
        queue.push_back(encode(values));
        if queue.len() > INPUT_BUFFER {
            queue.pop_front();
            *self.inputs.consumed.entry(session_id.to_owned()).or_default() += 1;
        }
    }

    /// Runs one fixed step: moves the clock by the step and hands the room at most one input
    /// per joined client, the oldest, in join order.
    ///
    /// # Panics
    /// If the room declared no inputs.
    pub fn step(&mut self) {
        let rate = self.inputs.decl.as_ref().map(|d| d.tick_rate_hz).expect("the room declares no inputs");
        let dt_ms = 1000.0 / rate as f64;
        let mut inputs = Vec::new();
        let joined: Vec<String> = self.clients().into_iter().map(str::to_owned).collect();
        for session_id in joined {
            if let Some(values) = self.inputs.queued.get_mut(&session_id).and_then(VecDeque::pop_front) {
                *self.inputs.consumed.entry(session_id.clone()).or_default() += 1;
                inputs.push(StepInput { session_id, values });
            }
        }
        self.now_ms += dt_ms.round() as u64;
        self.events(vec![Event::Step { dt_ms, inputs }]);
    }

    /// How many of `session_id`'s inputs were consumed: the ack its TIMED frames carry.
    pub fn acked(&self, session_id: &str) -> u64 {
        self.inputs.consumed.get(session_id).copied().unwrap_or(0)
    }

    /// How many of `session_id`'s inputs wait for a step.
    pub fn pending_inputs(&self, session_id: &str) -> usize {
        self.inputs.queued.get(session_id).map_or(0, VecDeque::len)
    }
}
