use odeon_schema::{MapSchema, StateEncoder};

// A state or item type that does not derive Schema says what to add.
struct Board {
    cells: MapSchema<u8>,
}

fn main() {
    let _ = StateEncoder::<Board>::reflection(odeon_schema::SchemaVersion::V4);
}
