use odeon_schema::Schema;

#[derive(Schema)]
enum State {
    Lobby,
}

#[derive(Schema)]
struct Wrapper<T> {
    value: T,
}

#[derive(Schema)]
struct Tuple(u8);

fn main() {}
