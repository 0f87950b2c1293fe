use odeon_schema::Schema;

#[derive(Schema, Default)]
struct Position {
    x: f64,
}

#[derive(Schema)]
struct State {
    position: Position,
}

fn main() {}
