//! MessagePack payloads: options, auth data and client messages as the host delivers them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Value;

/// MessagePack bytes from a client or the host, decoded on demand.
///
/// An empty payload (the client sent none) decodes like `nil`, so `()` and `Option<T>` accept it.
/// If `nil` does not fit the target type, an empty or `nil` payload is decoded as an empty map
/// instead, so an options struct whose fields all have defaults accepts a missing payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload(Vec<u8>);

/// A payload that is not valid MessagePack, or does not match the requested type. Its message
/// says where and how, as serde does: `invalid payload: index: invalid type: string "x",
/// expected usize`.
#[derive(Debug, thiserror::Error)]
#[error("invalid payload: {0}")]
pub struct PayloadError(String);

impl From<rmp_serde::decode::Error> for PayloadError {
    fn from(err: rmp_serde::decode::Error) -> Self {
        Self(err.to_string())
    }
}

const NIL: &[u8] = &[0xc0];
const EMPTY_MAP: &[u8] = &[0x80];

impl Payload {
    /// Wraps MessagePack bytes; empty bytes mean "no payload".
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Whether the client sent no payload at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw MessagePack bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The raw MessagePack bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Decodes the payload into `T`; maps decode into structs by field name.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        if self.0.is_empty() || self.0 == NIL {
            return rmp_serde::from_slice(NIL)
                .or_else(|_| rmp_serde::from_slice(EMPTY_MAP))
                .map_err(|_| explain::<T>(EMPTY_MAP));
        }
        rmp_serde::from_slice(&self.0).map_err(|_| explain::<T>(&self.0))
    }

    /// Decodes the payload into a dynamic [`Value`]; an empty payload is [`Value::Nil`].
    pub fn value(&self) -> Result<Value, PayloadError> {
        if self.0.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(rmp_serde::from_slice(&self.0)?)
    }

    /// The value under the string key `key`, when the payload is a map that has it.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self.value().ok()? {
            Value::Map(entries) => {
                entries.into_iter().find_map(|(k, v)| (k.as_str() == Some(key)).then_some(v))
            }
            _ => None,
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// Why `bytes` do not decode into `T`, said the way serde says it, with the path to the value
/// that does not fit (rmp-serde alone names only the MessagePack marker it did not expect).
fn explain<T: DeserializeOwned>(bytes: &[u8]) -> PayloadError {
    let value = match rmp_serde::from_slice::<rmpv::Value>(bytes) {
        Ok(value) => value,
        Err(e) => return PayloadError::from(e),
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Err(e) => {
            let rmpv::ext::Error::Syntax(why) = e.inner();
            match e.path().iter().next() {
                Some(_) => PayloadError(format!("{}: {why}", e.path())),
                None => PayloadError(why.clone()),
            }
        }
        // Valid through the dynamic value but not directly (an extension type, say).
        Ok(_) => PayloadError(format!("does not decode into {}", std::any::type_name::<T>())),
    }
}

/// Encodes `value` the way JavaScript clients expect: structs become maps keyed by field name.
pub(crate) fn encode_named<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Options {
        #[serde(default)]
        max_clients: Option<u32>,
        #[serde(default)]
        mode: String,
    }

    fn payload(value: &impl Serialize) -> Payload {
        Payload::new(encode_named(value).unwrap())
    }

    #[test]
    fn decodes_maps_into_structs() {
        let p = payload(&serde_json::json!({"maxClients": 2, "mode": "duel", "extra": [1]}));
        let options: Options = p.decode().unwrap();
        assert_eq!(options, Options { max_clients: Some(2), mode: "duel".into() });
        assert_eq!(p.get("mode"), Some(Value::from("duel")));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn empty_and_nil_payloads_decode_as_nil_or_empty_map() {
        for p in [Payload::default(), Payload::new(vec![0xc0])] {
            p.decode::<()>().unwrap();
            assert_eq!(p.decode::<Option<u8>>().unwrap(), None);
            let options: Options = p.decode().unwrap();
            assert_eq!(options, Options { max_clients: None, mode: String::new() });
            assert_eq!(p.value().unwrap(), Value::Nil);
            assert_eq!(p.get("mode"), None);
        }
        assert!(Payload::default().is_empty());
        assert!(!Payload::new(vec![0xc0]).is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [vec![0xc1], vec![0xdd, 0xff, 0xff, 0xff, 0xff], vec![0x92, 0x01], vec![0xd9]] {
            let p = Payload::new(bytes);
            assert!(p.value().is_err());
            assert!(p.decode::<Options>().is_err());
            assert_eq!(p.get("mode"), None);
        }
        let wrong_type = payload(&serde_json::json!({"maxClients": "four"}));
        let err = wrong_type.decode::<Options>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid payload: maxClients: invalid type: string "four", expected u32"#
        );
        #[derive(Debug, Deserialize)]
        struct Move {
            #[allow(dead_code)]
            index: usize,
        }
        let err = payload(&serde_json::json!({"index": "x"})).decode::<Move>().unwrap_err();
        assert_eq!(err.to_string(), r#"invalid payload: index: invalid type: string "x", expected usize"#);
        let err = payload(&serde_json::json!({})).decode::<Move>().unwrap_err();
        assert_eq!(err.to_string(), "invalid payload: missing field `index`");
        let err = Payload::default().decode::<Move>().unwrap_err();
        assert_eq!(err.to_string(), "invalid payload: missing field `index`");
        let err = Payload::new(vec![0xc1]).decode::<Move>().unwrap_err();
        assert!(err.to_string().starts_with("invalid payload: "), "{err}");
    }
}
