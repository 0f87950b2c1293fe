use odeon_schema::{MapSchema, Schema};

#[derive(Schema)]
struct State {
    scores: MapSchema<Vec<u8>>,
    maybe: Option<MapSchema<u8>>,
}

fn main() {}
