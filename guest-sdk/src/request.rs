//! Colyseus 0.18's round trips and inputs: [`Answer`] to a client's `room.request()`, and a
//! room's [`Inputs`] with the [`Step`]s that consume them on a fixed timestep.

use odeon_protocol::abi::{Effect, InputDecl, MessageType, RequestStatus, StepInput};
use serde::Serialize;

use crate::handler::Outcome;
use crate::payload::encode_named;
use crate::room::{Client, Room};
use crate::{Ctx, Message, Payload, RoomCtx, Schema};

/// How a room answers a request ([`Room::on_request`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answered: the client's promise resolves with the value (`undefined` for `None`).
    Ok(Option<Vec<u8>>),
    /// Refused on purpose: the promise rejects with `name "rejected"` and this reason.
    Reject(Option<Vec<u8>>),
    /// Failed: the promise rejects with an error of this name, message and code.
    Error {
        /// The error's name (`"Error"` for a plain failure).
        name: String,
        /// Its message.
        message: String,
        /// An optional code the client sees as `error.code`, MessagePack.
        code: Option<Vec<u8>>,
    },
    /// The room has no handler for this request type: answered with Colyseus's `no_handler`
    /// error (the default of [`Room::on_request`]).
    NoHandler,
}

impl Answer {
    /// Answers with `value`.
    pub fn ok<T: Serialize + ?Sized>(value: &T) -> Self {
        match encode_named(value) {
            Ok(bytes) => Self::Ok(Some(bytes)),
            Err(e) => Self::error("Error", format!("the answer did not encode: {e}")),
        }
    }

    /// Answers with no value (what a handler that returns nothing gets).
    pub fn empty() -> Self {
        Self::Ok(None)
    }

    /// Refuses with `reason`.
    pub fn reject<T: Serialize + ?Sized>(reason: &T) -> Self {
        Self::Reject(encode_named(reason).ok())
    }

    /// Fails with an error of `name` and `message`.
    pub fn error(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Error { name: name.into(), message: message.into(), code: None }
    }

    /// Fails with an error that also carries `code`.
    pub fn error_with_code<T: Serialize + ?Sized>(
        name: impl Into<String>,
        message: impl Into<String>,
        code: &T,
    ) -> Self {
        Self::Error { name: name.into(), message: message.into(), code: encode_named(code).ok() }
    }
}

/// The ERROR payload: `{name, message}` plus `code` when there is one.
pub(crate) fn error_payload(name: &str, message: &str, code: Option<Vec<u8>>) -> Vec<u8> {
    odeon_protocol::frame::request_error(name, message, code.as_deref())
}

/// A type as JavaScript's `String(type)` writes it: `5`, not `5.0`.
pub(crate) fn type_name(kind: &MessageType) -> String {
    match kind {
        MessageType::Str(s) => s.clone(),
        MessageType::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
        MessageType::Num(n) => n.to_string(),
    }
}

/// Runs the room's request handler ([`Room::on_request`]) and queues its answer.
pub(crate) fn answer<R: Room>(
    room: &mut R,
    ctx: &mut RoomCtx<R>,
    client: Client,
    request_id: f64,
    message: Message,
) {
    let type_name = type_name(&message.kind);
    let (status, payload) = match room.on_request(ctx, &client, message) {
        Answer::Ok(payload) => (RequestStatus::Ok, payload),
        Answer::Reject(reason) => (RequestStatus::Rejected, reason),
        Answer::Error { name, message, code } => {
            (RequestStatus::Error, Some(error_payload(&name, &message, code)))
        }
        Answer::NoHandler => {
            let message = format!(
                "room \"{}\" has no onMessage(\"{type_name}\") handler to answer this request.",
                R::NAME
            );
            (RequestStatus::Error, Some(error_payload("no_handler", &message, None)))
        }
    };
    push_response(ctx, &client, request_id, status, payload);
}

/// Queues the answer a typed handler's outcome gives: OK with its value, REJECTED with a
/// refusal's `{code, message}`, ERROR with a fault's `{name: "Error", message, code}`.
pub(crate) fn respond<S, U>(ctx: &mut Ctx<S, U>, client: &Client, request_id: f64, outcome: Outcome) {
    let (status, payload) = match outcome {
        Ok(value) => (RequestStatus::Ok, value),
        Err(reject) if reject.is_fault() => {
            let code = crate::rt::encode_value(&reject.code.into());
            (RequestStatus::Error, Some(error_payload("Error", &reject.message, Some(code))))
        }
        Err(reject) => (RequestStatus::Rejected, Some(crate::handler::reason(&reject))),
    };
    push_response(ctx, client, request_id, status, payload);
}

fn push_response<S, U>(
    ctx: &mut Ctx<S, U>,
    client: &Client,
    request_id: f64,
    status: RequestStatus,
    payload: Option<Vec<u8>>,
) {
    ctx.push_effect(Effect::Respond {
        to: client.session_id().to_owned(),
        request_id,
        status,
        payload: payload.map(serde_bytes::ByteBuf::from),
    });
}

/// What a room declares about its inputs ([`Room::inputs`]): the input type, a flat
/// `#[derive(Schema)]` struct of primitives, and the fixed timestep its steps run at.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    decl: InputDecl,
}

impl Inputs {
    /// Inputs of type `T` at `tick_rate_hz` steps per second.
    ///
    /// # Panics
    ///
    /// If `T` has a field that is not a primitive (inputs are flat), or the rate is 0.
    pub fn of<T: Schema>(tick_rate_hz: u32) -> Self {
        assert!(tick_rate_hz > 0, "the fixed timestep needs a rate above 0");
        let fields = match odeon_schema::primitive_fields::<T>() {
            Ok(fields) => fields.into_iter().map(|(n, t)| (n.to_owned(), t.to_owned())).collect(),
            Err(field) => panic!("input field `{field}` is not a primitive; inputs are flat structs"),
        };
        let reflection_v5 = odeon_schema::reflection::<T>(odeon_schema::SchemaVersion::V5);
        Self { decl: InputDecl { reflection_v5, fields, tick_rate_hz, sub_steps: 1 } }
    }

    /// Advertises `n` sub-steps per step to clients (the room runs them in [`Room::on_step`]).
    pub fn sub_steps(mut self, n: u32) -> Self {
        self.decl.sub_steps = n.max(1);
        self
    }

    pub(crate) fn into_decl(self) -> InputDecl {
        self.decl
    }
}

/// One fixed-timestep step ([`Room::on_step`]): at most one input per client, the oldest it
/// sent that no step consumed yet, in the order the clients joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step length in milliseconds.
    pub dt_ms: f64,
    /// The inputs this step consumes, each the client's input values when it sent it.
    pub inputs: Vec<(Client, Payload)>,
}

impl Step {
    pub(crate) fn new(dt_ms: f64, inputs: Vec<StepInput>) -> Self {
        let inputs =
            inputs.into_iter().map(|i| (Client::new(i.session_id), Payload::new(i.values))).collect();
        Self { dt_ms, inputs }
    }

    /// The inputs decoded as `T` (the room's input type); inputs that do not decode are left out.
    pub fn decoded<T: serde::de::DeserializeOwned>(&self) -> Vec<(&Client, T)> {
        self.inputs.iter().filter_map(|(c, p)| p.decode().ok().map(|v| (c, v))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_types_print_as_javascript_does() {
        assert_eq!(type_name(&MessageType::Num(5.0)), "5");
        assert_eq!(type_name(&MessageType::Num(-1.5)), "-1.5");
        assert_eq!(type_name(&MessageType::Str("nobody".into())), "nobody");
    }

    #[test]
    fn error_payloads_carry_name_message_and_an_optional_code() {
        let p = Payload::new(error_payload("Error", "boom", None)).value().unwrap();
        assert_eq!(p.to_string(), r#"{"name": "Error", "message": "boom"}"#);
        let code = encode_named(&42).unwrap();
        let p = Payload::new(error_payload("E", "m", Some(code))).value().unwrap();
        assert_eq!(p.to_string(), r#"{"name": "E", "message": "m", "code": 42}"#);
    }
}
