//! Typed message handlers: one function per message type, registered in [`Room::handlers`],
//! whose payload the SDK decodes and whose `Result` becomes the sender's answer.
//!
//! This is Colyseus 0.18's `onMessage(type, handler)`: the same handler serves `room.send(type,
//! payload)`, `room.send(type, payload, callback)` and `room.request(type, payload)`. What the
//! handler returns decides what the sender gets:
//!
//! | the handler | `send` | `send` with a callback, `request` |
//! |---|---|---|
//! | returns `Ok(value)` | nothing (the value is dropped) | OK with the value (`()`: no value) |
//! | returns `Err(Reject::new(..))` | an error frame (`room.onError(code, message)`) | REJECTED, reason `{code, message}` |
//! | returns `Err(Reject::fault(..))` | an error frame | ERROR `{name: "Error", message, code}` |
//! | gets a payload that does not decode | error frame 4217 ([`INVALID_PAYLOAD`]) | ERROR with code 4217 |
//!
//! In every case the room carries on, so a bad message costs that message only. A panic is
//! another matter: see [`Room`]'s "What kills a room" section.

use std::any::TypeId;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::payload::encode_named;
use crate::request::type_name;
use crate::{Client, IntoMessageType, MessageType, Payload, PayloadError, Room, RoomCtx, RoomError, Value};

/// The error code of a payload that does not decode into the handler's type (Colyseus's
/// `ErrorCode.INVALID_PAYLOAD`).
pub const INVALID_PAYLOAD: u32 = 4217;

/// Why a typed handler refused a message: the sender learns it, and the room carries on.
///
/// A refusal ([`Reject::new`], [`Reject::with_code`]) is the handler saying no on purpose, as
/// Colyseus 0.18's `ctx.reject(reason)`: a request is answered REJECTED, and the client's
/// promise rejects with `name "rejected"` and `.reason` = `{code, message}`. A fault
/// ([`Reject::fault`]) is something that went wrong, as a thrown error: a request is answered
/// ERROR, and the promise rejects with `.message` and `.code`. A plain `send` gets an error frame
/// with the code and message either way.
///
/// `?` turns a [`PayloadError`] into a fault with code [`INVALID_PAYLOAD`], and a `&str`,
/// `String` or [`RoomError`] into a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct Reject {
    /// The code: the client's `onError` code, or the reason's `code`.
    pub code: u32,
    /// What went wrong, for the sender.
    pub message: String,
    fault: bool,
}

impl Reject {
    /// The code of a refusal that names none.
    pub const DEFAULT_CODE: u32 = 4400;

    /// A refusal with [`Reject::DEFAULT_CODE`].
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code(Self::DEFAULT_CODE, message)
    }

    /// A refusal with `code`.
    pub fn with_code(code: u32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fault: false }
    }

    /// A fault: requests are answered ERROR rather than REJECTED.
    pub fn fault(code: u32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fault: true }
    }

    /// Whether this is a fault rather than a refusal.
    pub fn is_fault(&self) -> bool {
        self.fault
    }

    /// `Ok(())` when `condition` holds, else a refusal with `code` and `message`: one line per
    /// rule in a handler, `Reject::unless(game.turn == me, NOT_YOUR_TURN, "not your turn")?;`.
    pub fn unless(condition: bool, code: u32, message: impl Into<String>) -> Result<(), Reject> {
        if condition { Ok(()) } else { Err(Self::with_code(code, message)) }
    }
}

impl From<&str> for Reject {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for Reject {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<PayloadError> for Reject {
    fn from(err: PayloadError) -> Self {
        Self::fault(INVALID_PAYLOAD, err.to_string())
    }
}

impl From<RoomError> for Reject {
    fn from(err: RoomError) -> Self {
        Self::with_code(err.code.unwrap_or(Self::DEFAULT_CODE), err.message)
    }
}

/// A payload type a typed handler takes: anything serde decodes (a struct is decoded from the
/// client's object by field name, `()` from no payload), or the raw [`Payload`] itself.
pub trait FromPayload: Sized {
    /// Decodes the payload; an error is answered to the sender as [`INVALID_PAYLOAD`].
    fn from_payload(payload: &Payload) -> Result<Self, PayloadError>;
}

impl<T: DeserializeOwned> FromPayload for T {
    fn from_payload(payload: &Payload) -> Result<Self, PayloadError> {
        payload.decode()
    }
}

impl FromPayload for Payload {
    fn from_payload(payload: &Payload) -> Result<Self, PayloadError> {
        Ok(payload.clone())
    }
}

/// What a handler's call came to: the encoded answer, if any, or why the message was refused.
pub(crate) type Outcome = Result<Option<Vec<u8>>, Reject>;

type Boxed<R> = Box<dyn Fn(&mut R, &mut RoomCtx<R>, &Client, &Payload) -> Outcome>;

/// The typed handlers of a room type, registered once in [`Room::handlers`].
///
/// ```
/// use odeon_guest::prelude::*;
/// use serde::Deserialize;
///
/// pub struct Counter(u32);
///
/// #[derive(Deserialize)]
/// struct Add {
///     by: u32,
/// }
///
/// impl Room for Counter {
///     const NAME: &'static str = "counter";
///     type State = ();
///     type UserData = ();
///
///     fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
///         Ok(Counter(0))
///     }
///
///     fn handlers(on: &mut Handlers<Self>) {
///         on.message("add", Self::add);
///     }
/// }
///
/// impl Counter {
///     /// Answers a request with the new total; refuses steps above 10.
///     fn add(&mut self, _ctx: &mut Ctx, _client: &Client, Add { by }: Add) -> Result<u32, Reject> {
///         if by > 10 {
///             return Err(Reject::new("add at most 10"));
///         }
///         self.0 += by;
///         Ok(self.0)
///     }
/// }
/// # export_room!(Counter);
/// ```
pub struct Handlers<R: Room> {
    entries: Vec<(MessageType, Boxed<R>)>,
}

impl<R: Room> fmt::Debug for Handlers<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(kind, _)| kind)).finish()
    }
}

impl<R: Room> Handlers<R> {
    /// Every handler `R` registers.
    pub(crate) fn of() -> Self {
        let mut handlers = Self { entries: Vec::new() };
        R::handlers(&mut handlers);
        handlers
    }

    /// Handles messages and requests of type `kind` with `handler`, which gets the payload
    /// decoded as `P` and answers with `Ok(value)` or refuses with `Err` (see the
    /// [module docs](crate::handler) for what the sender gets). A type with a handler never
    /// reaches [`Room::on_message`] or [`Room::on_request`].
    ///
    /// # Panics
    ///
    /// If `kind` already has a handler: each type has one.
    pub fn message<P, T, E, F>(&mut self, kind: impl IntoMessageType, handler: F) -> &mut Self
    where
        P: FromPayload,
        T: Serialize + 'static,
        E: Into<Reject>,
        F: Fn(&mut R, &mut RoomCtx<R>, &Client, P) -> Result<T, E> + 'static,
    {
        let kind = kind.into_message_type();
        assert!(self.get(&kind).is_none(), "room {:?} registers two handlers for {kind:?}", R::NAME);
        let name = type_name(&kind);
        let boxed: Boxed<R> = Box::new(move |room, ctx, client, payload| {
            let payload = P::from_payload(payload)
                .map_err(|e| Reject::fault(INVALID_PAYLOAD, format!("{name}: {e}")))?;
            let value = handler(room, ctx, client, payload).map_err(Into::into)?;
            answer(&value)
        });
        self.entries.push((kind, boxed));
        self
    }

    /// The handler for `kind`, if the room registered one.
    pub(crate) fn get(&self, kind: &MessageType) -> Option<&Boxed<R>> {
        self.entries.iter().find(|(k, _)| k == kind).map(|(_, handler)| handler)
    }
}

/// A handler's value as the answer's payload: none for `()`, as a Colyseus handler that returns
/// nothing.
fn answer<T: Serialize + 'static>(value: &T) -> Outcome {
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return Ok(None);
    }
    match encode_named(value) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) => Err(Reject::fault(500, format!("the answer did not encode: {e}"))),
    }
}

/// A refusal's REJECTED reason: `{code, message}`.
pub(crate) fn reason(reject: &Reject) -> Vec<u8> {
    let reason = Value::Map(vec![
        ("code".into(), reject.code.into()),
        ("message".into(), reject.message.as_str().into()),
    ]);
    crate::rt::encode_value(&reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_answers_carry_no_payload_and_values_do() {
        assert_eq!(answer(&()), Ok(None));
        assert_eq!(answer(&5u8), Ok(Some(vec![5])));
        assert_eq!(answer(&None::<u8>), Ok(Some(vec![0xc0])));
    }

    #[test]
    fn conversions_pick_refusal_or_fault() {
        let refusal = Reject::from("no");
        assert_eq!((refusal.code, refusal.is_fault()), (Reject::DEFAULT_CODE, false));
        let coded = Reject::from(RoomError::with_code(4001, "taken"));
        assert_eq!((coded.code, coded.message.as_str()), (4001, "taken"));
        let bad = Payload::new(vec![0xc1]).decode::<u8>().unwrap_err();
        let fault = Reject::from(bad);
        assert_eq!((fault.code, fault.is_fault()), (INVALID_PAYLOAD, true));
        assert_eq!(Reject::unless(true, 7, "x"), Ok(()));
        assert_eq!(Reject::unless(false, 7, "x"), Err(Reject::with_code(7, "x")));
        let reason = Payload::new(reason(&Reject::with_code(7, "x"))).value().unwrap();
        assert_eq!(reason.to_string(), r#"{"code": 7, "message": "x"}"#);
    }
}
