//! Client messages and message types.

use crate::{MessageType, Payload};

/// A message a client sent with `room.send(type, payload)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The message type: usually a string, sometimes a number.
    pub kind: MessageType,
    /// The payload; empty when the client sent none.
    pub payload: Payload,
}

impl Message {
    /// Whether this message has the string type `kind`.
    pub fn is(&self, kind: &str) -> bool {
        self.kind.is(kind)
    }
}

/// Reading a [`MessageType`]; in the [`prelude`](crate::prelude).
pub trait MessageTypeExt {
    /// The type as a string, or `None` for a numeric type: `match kind.as_str() { Some("move") => .. }`.
    fn as_str(&self) -> Option<&str>;

    /// Whether this is the string type `kind`.
    fn is(&self, kind: &str) -> bool {
        self.as_str() == Some(kind)
    }
}

impl MessageTypeExt for MessageType {
    fn as_str(&self) -> Option<&str> {
        match self {
            MessageType::Str(s) => Some(s),
            MessageType::Num(_) => None,
        }
    }
}

/// Anything usable as a message type: `"chat"`, `String`, or a number (`7`, `7.5`).
///
/// This stands in for `From` conversions, which Rust's orphan rules forbid on the ABI's
/// [`MessageType`].
pub trait IntoMessageType {
    /// Converts into the ABI's [`MessageType`].
    fn into_message_type(self) -> MessageType;
}

impl IntoMessageType for MessageType {
    fn into_message_type(self) -> MessageType {
        self
    }
}

impl IntoMessageType for &MessageType {
    fn into_message_type(self) -> MessageType {
        self.clone()
    }
}

impl IntoMessageType for &str {
    fn into_message_type(self) -> MessageType {
        MessageType::Str(self.to_owned())
    }
}

impl IntoMessageType for String {
    fn into_message_type(self) -> MessageType {
        MessageType::Str(self)
    }
}

impl IntoMessageType for &String {
    fn into_message_type(self) -> MessageType {
        MessageType::Str(self.clone())
    }
}

impl IntoMessageType for i32 {
    fn into_message_type(self) -> MessageType {
        MessageType::Num(self.into())
    }
}

impl IntoMessageType for u32 {
    fn into_message_type(self) -> MessageType {
        MessageType::Num(self.into())
    }
}

impl IntoMessageType for f64 {
    fn into_message_type(self) -> MessageType {
        MessageType::Num(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_and_matching() {
        assert_eq!("a".into_message_type(), MessageType::Str("a".into()));
        assert_eq!(String::from("a").into_message_type(), MessageType::Str("a".into()));
        assert_eq!(7.into_message_type(), MessageType::Num(7.0));
        assert_eq!(7u32.into_message_type(), MessageType::Num(7.0));
        assert_eq!(7.5.into_message_type(), MessageType::Num(7.5));
        let message = Message { kind: "echo".into_message_type(), payload: Payload::default() };
        assert!(message.is("echo"));
        assert!(!message.is("other"));
        assert_eq!(MessageType::Num(1.0).as_str(), None);
        assert!(!MessageType::Num(1.0).is("1"));
    }
}
