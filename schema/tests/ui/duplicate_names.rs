use odeon_schema::Schema;

// Wire names are camelCase by default, so these two fields would reach clients as one.
#[derive(Schema)]
struct State {
    player_count: u8,
    playerCount: u8,
}

fn main() {}
