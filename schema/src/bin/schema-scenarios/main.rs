//! Prints, as JSON on stdout, the frames `odeon-schema` produces for the named scenarios of
//! `tests/schema` (whose Node tests compare them with the official `@colyseus/schema`
//! encoders and decode them with the official decoders), or for a seeded random soak.
//!
//! `schema-scenarios scenarios` or `schema-scenarios soak <seed> <operations>`.

use std::fmt::Write;

use odeon_schema::{ArraySchema, MapSchema, Schema, SchemaVersion, Shared, StateEncoder};

mod plain;
mod soak;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["scenarios"] => scenarios(),
        ["soak", seed, ops] => match (seed.parse(), ops.parse()) {
            (Ok(seed), Ok(ops)) => soak::run(seed, ops),
            _ => usage(),
        },
        _ => usage(),
    };
    println!("{out}");
}

fn usage() -> ! {
    eprintln!("usage: schema-scenarios scenarios | schema-scenarios soak <seed> <operations>");
    std::process::exit(2)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        _ = write!(s, "{b:02x}");
        s
    })
}

fn json_str(s: &str) -> String {
    format!("{s:?}")
}

/// One scenario's frames: the handshakes, then per step the patch, the full state and the JSON.
struct Recorder<T: Schema> {
    enc: StateEncoder<T>,
    steps: Vec<String>,
}

impl<T: Schema> Recorder<T> {
    fn new(state: T) -> Self {
        let mut enc = StateEncoder::new(state);
        let full = enc.full_state();
        let init =
            format!(r#"{{"label":"init","patch":null,"full":"{}","json":{}}}"#, hex(&full), enc.to_json());
        Self { enc, steps: vec![init] }
    }

    fn step(&mut self, label: &str, change: impl FnOnce(&mut StateEncoder<T>)) {
        change(&mut self.enc);
        let patch = match self.enc.patch() {
            Some(p) => format!("\"{}\"", hex(&p)),
            None => "null".into(),
        };
        let full = self.enc.full_state();
        self.steps.push(format!(
            r#"{{"label":{},"patch":{patch},"full":"{}","json":{}}}"#,
            json_str(label),
            hex(&full),
            self.enc.to_json()
        ));
    }

    /// A step that changes the state as a plain value, outside the encoder, as a room does.
    fn step_plain(&mut self, label: &str, change: impl FnOnce(&mut T))
    where
        T: Default,
    {
        self.step(label, |enc| {
            let mut value = T::default();
            enc.detach(&mut value);
            change(&mut value);
            enc.attach(&mut value);
        });
    }

    fn finish(self, name: &str) -> String {
        format!(
            r#"{}:{{"reflection":{{"v4":"{}","v5":"{}"}},"steps":[{}]}}"#,
            json_str(name),
            hex(&StateEncoder::<T>::reflection(SchemaVersion::V4)),
            hex(&StateEncoder::<T>::reflection(SchemaVersion::V5)),
            self.steps.join(",")
        )
    }
}

fn scenarios() -> String {
    let all = [
        primitives(),
        nested(),
        maps(),
        array_primitives(),
        array_structs(),
        replace_collections(),
        shared_refs(),
        arena(),
        multi_order(),
        renamed(),
        plain::plain(),
    ];
    format!("{{{}}}", all.join(","))
}

#[derive(Schema, Default)]
struct Prims {
    s: String,
    n: f64,
    b: bool,
    int8: i8,
    uint8: u8,
    int16: i16,
    uint16: u16,
    int32: i32,
    uint32: u32,
    int64: i64,
    uint64: u64,
    float32: f32,
    #[schema(float64)]
    float64: f64,
    opt: Option<String>,
    #[schema(number)]
    count: u32,
}

fn primitives() -> String {
    let mut r = Recorder::new(Prims {
        s: "hello".into(),
        n: 1.5,
        b: true,
        int8: -5,
        uint8: 200,
        int16: -300,
        uint16: 60000,
        int32: -70000,
        uint32: 4_000_000_000,
        int64: -(1 << 40),
        uint64: 1 << 50,
        float32: 0.1,
        float64: 0.1,
        opt: Some("x".into()),
        count: 5,
    });
    r.step("n=100000", |e| e.state_mut().set_n(100_000.0));
    r.step("n=0.1", |e| e.state_mut().set_n(0.1));
    r.step("n=1e12", |e| e.state_mut().set_n(1e12));
    r.step("n=-2.5", |e| e.state_mut().set_n(-2.5));
    r.step("n=2^31", |e| e.state_mut().set_n(2_147_483_648.0));
    r.step("all", |e| {
        let mut s = e.state_mut();
        s.set_s("a longer string that needs the str8 tag, more than 31 bytes");
        s.set_n(-1.0);
        s.set_b(false);
        s.set_int8(127);
        s.set_uint8(0);
        s.set_int16(32767);
        s.set_uint16(1);
        s.set_int32(i32::MIN);
        s.set_uint32(7);
        s.set_int64(1 << 50);
        s.set_uint64(3);
        s.set_float32(-2.25);
        s.set_float64(1e-300);
        s.set_count(300);
    });
    r.step("opt=undefined", |e| e.state_mut().set_opt(None));
    r.step("opt=y", |e| e.state_mut().set_opt(Some("y".into())));
    r.step("opt=undefined,z", |e| {
        e.state_mut().set_opt(None);
        e.state_mut().set_opt(Some("z".into()));
    });
    r.step("same", |e| e.state_mut().set_s("a longer string that needs the str8 tag, more than 31 bytes"));
    r.step("unicode", |e| e.state_mut().set_s("héllo 🌍"));
    r.finish("primitives")
}

#[derive(Schema, Default)]
struct Vec2 {
    x: f64,
    y: f64,
}

#[derive(Schema, Default)]
struct Body {
    pos: Shared<Vec2>,
    vel: Option<Shared<Vec2>>,
    mass: f32,
}

#[derive(Schema, Default)]
struct World {
    body: Shared<Body>,
    name: String,
}

fn nested() -> String {
    let mut r = Recorder::new(World {
        body: Shared::new(Body { pos: Vec2 { x: 1.0, y: 2.0 }.into(), vel: None, mass: 3.5 }),
        name: "w".into(),
    });
    r.step("pos.x=5", |e| e.state().body.borrow().pos.borrow_mut().set_x(5.0));
    r.step("vel=new", |e| e.state().body.borrow_mut().set_vel(Shared::new(Vec2 { x: 0.5, y: 0.0 })));
    r.step("pos=new", |e| e.state().body.borrow_mut().set_pos(Vec2 { x: 9.0, y: 9.0 }));
    r.step("vel=undefined", |e| e.state().body.borrow_mut().set_vel(None));
    r.step("body=new", |e| {
        e.state_mut().set_body(Body { pos: Vec2 { x: -1.0, y: -1.0 }.into(), vel: None, mass: 1.0 })
    });
    r.step("name", |e| e.state_mut().set_name("world"));
    r.finish("nested")
}

#[derive(Schema, Default)]
struct Item {
    name: String,
    qty: u8,
}

fn item(name: &str, qty: u8) -> Item {
    Item { name: name.into(), qty }
}

#[derive(Schema, Default)]
struct Inventory {
    items: MapSchema<Item>,
    counts: MapSchema<i32>,
}

fn maps() -> String {
    let mut r = Recorder::new(Inventory::default());
    r.step("add a,b", |e| {
        let mut s = e.state_mut();
        s.items_mut().insert("a", item("apple", 1));
        s.items_mut().insert("b", item("bread", 2));
    });
    r.step("remove a", |e| _ = e.state_mut().items_mut().remove("a"));
    r.step("re-add a", |e| _ = e.state_mut().items_mut().insert("a", item("apricot", 3)));
    r.step("remove+add b", |e| {
        let mut s = e.state_mut();
        s.items_mut().remove("b");
        s.items_mut().insert("b", item("bagel", 4));
    });
    r.step("replace a", |e| _ = e.state_mut().items_mut().insert("a", item("avocado", 5)));
    r.step("a.qty", |e| e.state().items.get("a").expect("a").borrow_mut().set_qty(6));
    r.step("counts x,y", |e| {
        let mut s = e.state_mut();
        s.counts_mut().insert("x", 1);
        s.counts_mut().insert("y", 2);
    });
    r.step("counts x=5", |e| _ = e.state_mut().counts_mut().insert("x", 5));
    r.step("counts remove y", |e| _ = e.state_mut().counts_mut().remove("y"));
    r.step("counts clear", |e| e.state_mut().counts_mut().clear());
    r.step("counts clear+add", |e| {
        let mut s = e.state_mut();
        s.counts_mut().insert("p", 1);
        s.counts_mut().clear();
        s.counts_mut().insert("q", -7);
    });
    r.step("items clear", |e| e.state_mut().items_mut().clear());
    r.finish("maps")
}

#[derive(Schema, Default)]
struct Lists {
    names: ArraySchema<String>,
    nums: ArraySchema<f64>,
}

fn array_primitives() -> String {
    let mut r =
        Recorder::new(Lists { names: ["a", "b", "c"].into_iter().collect(), nums: ArraySchema::new() });
    r.step("push d", |e| e.state_mut().names_mut().push("d"));
    r.step("pop", |e| _ = e.state_mut().names_mut().pop());
    r.step("splice(1,1)", |e| _ = e.state_mut().names_mut().remove(1));
    r.step("[0]=z", |e| _ = e.state_mut().names_mut().set(0, "z"));
    r.step("push e,f", |e| e.state_mut().names_mut().extend(["e", "f"]));
    r.step("pop,push g", |e| {
        let mut s = e.state_mut();
        s.names_mut().pop();
        s.names_mut().push("g");
    });
    r.step("unshift m", |e| e.state_mut().names_mut().insert(0, "m"));
    r.step("shift", |e| _ = e.state_mut().names_mut().remove(0));
    r.step("clear", |e| e.state_mut().names_mut().clear());
    r.step("push h", |e| e.state_mut().names_mut().push("h"));
    r.step("clear,push i,j", |e| {
        let mut s = e.state_mut();
        s.names_mut().clear();
        s.names_mut().extend(["i", "j"]);
    });
    r.step("nums", |e| e.state_mut().nums_mut().extend([1.5, 2.0, -3.0]));
    r.step("nums[1]=0.25", |e| _ = e.state_mut().nums_mut().set(1, 0.25));
    r.finish("array_primitives")
}

#[derive(Schema, Default)]
struct Unit {
    hp: u16,
    tag: String,
}

fn unit(hp: u16, tag: &str) -> Unit {
    Unit { hp, tag: tag.into() }
}

#[derive(Schema, Default)]
struct Army {
    units: ArraySchema<Unit>,
}

fn array_structs() -> String {
    let mut r =
        Recorder::new(Army { units: [unit(10, "u1"), unit(20, "u2"), unit(30, "u3")].into_iter().collect() });
    r.step("u2.hp", |e| e.state().units[1].borrow_mut().set_hp(5));
    r.step("push u4", |e| e.state_mut().units_mut().push(unit(40, "u4")));
    r.step("splice(1,1)", |e| _ = e.state_mut().units_mut().remove(1));
    r.step("pop", |e| _ = e.state_mut().units_mut().pop());
    r.step("[0]=new", |e| _ = e.state_mut().units_mut().set(0, unit(99, "n")));
    r.step("clear", |e| e.state_mut().units_mut().clear());
    r.step("push u5", |e| e.state_mut().units_mut().push(unit(50, "u5")));
    r.finish("array_structs")
}

#[derive(Schema, Default)]
struct Holder {
    m: MapSchema<f64>,
    a: ArraySchema<String>,
    c: Option<Shared<Item>>,
}

fn replace_collections() -> String {
    let mut r = Recorder::new(Holder {
        m: [("k", 1.0)].into_iter().collect(),
        a: ["x"].into_iter().collect(),
        c: Some(item("c", 1).into()),
    });
    r.step("m=new", |e| e.state_mut().set_m([("z", 2.0)].into_iter().collect::<MapSchema<f64>>()));
    r.step("a=new", |e| e.state_mut().set_a(["q", "r"].into_iter().collect::<ArraySchema<String>>()));
    r.step("c=new", |e| e.state_mut().set_c(Shared::new(item("d", 2))));
    r.step("c=undefined", |e| e.state_mut().set_c(None));
    r.finish("replace_collections")
}

#[derive(Schema, Default)]
struct Pt {
    v: i32,
}

#[derive(Schema, Default)]
struct Sharing {
    a: Option<Shared<Pt>>,
    b: Option<Shared<Pt>>,
    m: MapSchema<Pt>,
    l: ArraySchema<Pt>,
}

fn shared_refs() -> String {
    let p = Shared::new(Pt { v: 1 });
    let q = Shared::new(Pt { v: 10 });
    let mut r = Recorder::new(Sharing::default());
    r.step("a=b=m.k=p", |e| {
        let mut s = e.state_mut();
        s.set_a(p.clone());
        s.set_b(p.clone());
        s.m_mut().insert("k", p.clone());
    });
    r.step("p.v=2", |_| p.borrow_mut().set_v(2));
    r.step("b=undefined", |e| e.state_mut().set_b(None));
    r.step("m.remove(k)", |e| _ = e.state_mut().m_mut().remove("k"));
    r.step("a=undefined", |e| e.state_mut().set_a(None));
    r.step("a=p again", |e| e.state_mut().set_a(p.clone()));
    r.step("l=[q,q]", |e| e.state_mut().l_mut().extend([q.clone(), q.clone()]));
    r.step("q.v=11", |_| q.borrow_mut().set_v(11));
    r.step("l.pop", |e| _ = e.state_mut().l_mut().pop());
    r.finish("shared_refs")
}

#[derive(Schema, Default)]
struct ArenaPlayer {
    x: f64,
    y: f64,
}

#[derive(Schema, Default)]
struct Arena {
    players: MapSchema<ArenaPlayer>,
}

fn arena() -> String {
    let mut r = Recorder::new(Arena::default());
    r.step("A joins", |e| _ = e.state_mut().players_mut().insert("MhW2NG5DX", ArenaPlayer::default()));
    r.step("A moves", |e| {
        let a = e.state().players.get("MhW2NG5DX").cloned().expect("A");
        a.borrow_mut().set_x(7.0);
        a.borrow_mut().set_y(9.0);
    });
    r.step("B joins", |e| _ = e.state_mut().players_mut().insert("UyyWFYn_9", ArenaPlayer::default()));
    r.step("A moves again", |e| {
        let a = e.state().players.get("MhW2NG5DX").cloned().expect("A");
        a.borrow_mut().set_x(1.5);
        a.borrow_mut().set_y(-2.25);
    });
    r.step("B leaves", |e| _ = e.state_mut().players_mut().remove("UyyWFYn_9"));
    r.finish("arena")
}

fn multi_order() -> String {
    let mut r = Recorder::new(Arena {
        players: [
            ("p1", ArenaPlayer::default()),
            ("p2", ArenaPlayer::default()),
            ("p3", ArenaPlayer::default()),
        ]
        .into_iter()
        .collect(),
    });
    r.step("p3 then p1 move", |e| {
        let s = e.state();
        s.players.get("p3").expect("p3").borrow_mut().set_x(3.0);
        s.players.get("p1").expect("p1").borrow_mut().set_x(1.0);
    });
    r.step("p2 y then x", |e| {
        let p2 = e.state().players.get("p2").cloned().expect("p2");
        p2.borrow_mut().set_y(2.0);
        p2.borrow_mut().set_x(2.5);
    });
    r.finish("multi_order")
}

#[derive(Schema, Default)]
#[schema(rename_all = "camelCase")]
struct Camel {
    player_count: u8,
    #[schema(rename = "TTL")]
    ttl: u16,
    #[schema(skip)]
    #[allow(dead_code)]
    secret: Vec<u8>,
    room_name: String,
}

fn renamed() -> String {
    let mut r =
        Recorder::new(Camel { player_count: 2, ttl: 300, secret: vec![1, 2], room_name: "lobby".into() });
    r.step("playerCount", |e| {
        e.state_mut().set_player_count(3);
        e.state_mut().secret_mut().push(3);
    });
    r.finish("renamed")
}
