use odeon_schema::Schema;

#[derive(Schema)]
struct State {
    #[schema(flaot64)]
    speed: f64,
}

#[derive(Schema)]
#[schema(rename_all = "kebab-case")]
struct Other {
    speed: f64,
}

#[derive(Schema)]
struct Third {
    #[schema(float64)]
    name: String,
}

fn main() {}
