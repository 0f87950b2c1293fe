use odeon_schema::Schema;

#[derive(Schema)]
struct State {
    names: Vec<String>,
    counter: usize,
}

fn main() {}
