//! Ids as Colyseus makes them: 9 characters of the nanoid alphabet `[A-Za-z0-9_-]`.

use rand::Rng;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A fresh 9-character id (room ids, session ids, process ids, reconnection tokens).
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..9).map(|_| ALPHABET[rng.random_range(0..64)] as char).collect()
}

/// Whether `s` could be an id we route on (`[A-Za-z0-9_-]+`).
pub fn is_valid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_nine_url_safe_characters() {
        let id = super::generate();
        assert_eq!(id.len(), 9);
        assert!(super::is_valid(&id));
        assert_ne!(id, super::generate());
        assert!(!super::is_valid("a/b"));
    }
}
