//! The body of a matchmaking request (`POST /matchmake/{method}/{target}`): the client's options,
//! a JSON object, or nothing at all.

use serde_json::{Map, Value};

/// Why a body is not options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Valid JSON, but not an object.
    #[error("options must be a JSON object")]
    NotAnObject,
    /// Not JSON.
    #[error("invalid JSON body: {0}")]
    Json(String),
}

/// The options in a request body; an empty (or all-whitespace) body means none.
pub fn options(body: &[u8]) -> Result<Map<String, Value>, OptionsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(OptionsError::NotAnObject),
        Err(e) => Err(OptionsError::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_an_object_or_nothing() {
        assert_eq!(options(b"").unwrap(), Map::new());
        assert_eq!(options(b" \n").unwrap(), Map::new());
        assert_eq!(options(br#"{"mode":"duel"}"#).unwrap()["mode"], "duel");
        assert_eq!(options(b"[1]"), Err(OptionsError::NotAnObject));
        assert!(matches!(options(b"{"), Err(OptionsError::Json(_))));
    }
}
