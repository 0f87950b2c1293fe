//! Prints, as JSON on stdout, the frames `odeon-schema` produces for the named scenarios of
//! `tests/schema` (whose Node tests compare them with the official `@colyseus/schema`
//! encoders and decode them with the official decoders), or for a seeded random soak.
//!
//! `schema-scenarios scenarios` or `schema-scenarios soak <seed> <operations>`.

use std::fmt::Write;

use odeon_schema::{ArraySchema, MapSchema, Schema, SchemaVersion, Shared, StateEncoder};

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

/// The random-mutation soak: a nested state, seeded operations, a patch every few operations
/// and now and then a full state for a joining client.
mod soak {
    use super::*;

    #[derive(Schema, Default, Clone)]
    pub struct Gear {
        kind: String,
        qty: i16,
        #[schema(float64)]
        weight: f64,
    }

    #[derive(Schema, Default)]
    pub struct Hero {
        name: String,
        x: f64,
        y: f32,
        hp: Option<u8>,
        alive: bool,
        inventory: ArraySchema<Gear>,
        stats: MapSchema<f64>,
        pet: Option<Shared<Gear>>,
    }

    #[derive(Schema, Default)]
    pub struct World {
        heroes: MapSchema<Hero>,
        loot: ArraySchema<Gear>,
        tags: ArraySchema<String>,
        scores: MapSchema<i32>,
        boss: Option<Shared<Gear>>,
        tick: u32,
        title: String,
        favourite: Option<Shared<Hero>>,
    }

    /// xorshift64*: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
        fn float(&mut self) -> f64 {
            let v = (self.next() % 20_001) as f64 / 100.0 - 100.0;
            if self.chance(30) { v.round() } else { v }
        }
        fn word(&mut self) -> String {
            const WORDS: [&str; 8] =
                ["sword", "shield", "bow", "potion", "gem", "é🌍", "", "a-much-longer-name-for-str8"];
            WORDS[self.below(WORDS.len())].to_owned()
        }
    }

    struct Soak {
        rng: Rng,
        /// Every gear and hero instance created so far, to place again (shared or re-added).
        gear: Vec<Shared<Gear>>,
        heroes: Vec<Shared<Hero>>,
        next_key: usize,
    }

    impl Soak {
        fn new_gear(&mut self) -> Shared<Gear> {
            let g = Shared::new(Gear {
                kind: self.rng.word(),
                qty: (self.rng.below(2000) as i16) - 1000,
                weight: self.rng.float(),
            });
            self.gear.push(g.clone());
            g
        }

        fn some_gear(&mut self) -> Shared<Gear> {
            if !self.gear.is_empty() && self.rng.chance(40) {
                let i = self.rng.below(self.gear.len());
                self.gear[i].clone()
            } else {
                self.new_gear()
            }
        }

        fn new_hero(&mut self) -> Shared<Hero> {
            let mut hero = Hero {
                name: self.rng.word(),
                x: self.rng.float(),
                y: self.rng.float() as f32,
                hp: self.rng.chance(50).then(|| self.rng.below(256) as u8),
                alive: self.rng.chance(50),
                ..Hero::default()
            };
            for _ in 0..self.rng.below(3) {
                let g = self.some_gear();
                hero.inventory.push(g);
            }
            for _ in 0..self.rng.below(3) {
                let k = format!("s{}", self.rng.below(5));
                hero.stats.insert(k, self.rng.float());
            }
            let h = Shared::new(hero);
            self.heroes.push(h.clone());
            h
        }

        fn hero_in_state(&mut self, w: &StateEncoder<World>) -> Option<Shared<Hero>> {
            let s = w.state();
            if s.heroes.is_empty() {
                return None;
            }
            let i = self.rng.below(s.heroes.len());
            s.heroes.values().nth(i).cloned()
        }

        fn mutate_array(&mut self, a: &mut ArraySchema<Gear>) {
            match self.rng.below(8) {
                0 | 1 => a.push(self.some_gear()),
                2 => _ = a.pop(),
                3 if !a.is_empty() => _ = a.remove(self.rng.below(a.len())),
                4 => {
                    let i = self.rng.below(a.len() + 1);
                    a.insert(i, self.some_gear());
                }
                5 if !a.is_empty() => {
                    let i = self.rng.below(a.len());
                    a.set(i, self.some_gear());
                }
                6 if self.rng.chance(30) => a.clear(),
                _ => {
                    if let Some(g) = a.get(self.rng.below(a.len().max(1))).cloned() {
                        g.borrow_mut().set_qty(self.rng.below(100) as i16);
                    }
                }
            }
        }

        fn step(&mut self, w: &mut StateEncoder<World>) {
            match self.rng.below(20) {
                0 | 1 => {
                    let key = if self.rng.chance(30) && self.next_key > 0 {
                        format!("h{}", self.rng.below(self.next_key))
                    } else {
                        self.next_key += 1;
                        format!("h{}", self.next_key - 1)
                    };
                    let hero = if self.rng.chance(25) && !self.heroes.is_empty() {
                        self.heroes[self.rng.below(self.heroes.len())].clone()
                    } else {
                        self.new_hero()
                    };
                    w.state_mut().heroes_mut().insert(key, hero);
                }
                2 => {
                    let keys: Vec<String> = w.state().heroes.keys().map(str::to_owned).collect();
                    if !keys.is_empty() {
                        let k = &keys[self.rng.below(keys.len())];
                        w.state_mut().heroes_mut().remove(k);
                    }
                }
                3..=5 => {
                    if let Some(h) = self.hero_in_state(w) {
                        let mut h = h.borrow_mut();
                        match self.rng.below(6) {
                            0 => h.set_x(self.rng.float()),
                            1 => h.set_y(self.rng.float() as f32),
                            2 => h.set_hp(self.rng.chance(70).then(|| self.rng.below(256) as u8)),
                            3 => h.set_alive(self.rng.chance(50)),
                            4 => h.set_name(self.rng.word()),
                            _ => {
                                let pet = self.rng.chance(70).then(|| self.some_gear());
                                h.set_pet(pet);
                            }
                        }
                    }
                }
                6 | 7 => {
                    if let Some(h) = self.hero_in_state(w) {
                        let mut h = h.borrow_mut();
                        if self.rng.chance(5) {
                            h.set_inventory(ArraySchema::<Gear>::from_iter([self.some_gear()]));
                        } else {
                            self.mutate_array(h.inventory_mut());
                        }
                    }
                }
                8 => {
                    if let Some(h) = self.hero_in_state(w) {
                        let mut h = h.borrow_mut();
                        let k = format!("s{}", self.rng.below(5));
                        match self.rng.below(4) {
                            0 | 1 => _ = h.stats_mut().insert(k, self.rng.float()),
                            2 => _ = h.stats_mut().remove(&k),
                            _ => h.stats_mut().clear(),
                        }
                    }
                }
                9 | 10 => self.mutate_array(w.state_mut().loot_mut()),
                11 => {
                    let mut s = w.state_mut();
                    let tags = s.tags_mut();
                    match self.rng.below(6) {
                        0 | 1 => tags.push(self.rng.word()),
                        2 => _ = tags.pop(),
                        3 if !tags.is_empty() => _ = tags.remove(self.rng.below(tags.len())),
                        4 => tags.insert(self.rng.below(tags.len() + 1), self.rng.word()),
                        _ if !tags.is_empty() => _ = tags.set(self.rng.below(tags.len()), self.rng.word()),
                        _ => tags.clear(),
                    }
                }
                12 => {
                    let k = format!("p{}", self.rng.below(6));
                    let mut s = w.state_mut();
                    match self.rng.below(5) {
                        0..=2 => _ = s.scores_mut().insert(k, self.rng.below(2000) as i32 - 1000),
                        3 => _ = s.scores_mut().remove(&k),
                        _ => s.scores_mut().clear(),
                    }
                }
                13 => {
                    let boss = self.rng.chance(75).then(|| self.some_gear());
                    w.state_mut().set_boss(boss);
                }
                14 => {
                    let fav = if self.rng.chance(60) { self.hero_in_state(w) } else { None };
                    w.state_mut().set_favourite(fav);
                }
                15 => {
                    let tick = w.state().tick.wrapping_add(1);
                    w.state_mut().set_tick(tick);
                }
                16 => w.state_mut().set_title(self.rng.word()),
                17 => {
                    if let Some(g) = self.gear.get(self.rng.below(self.gear.len().max(1))).cloned() {
                        let mut g = g.borrow_mut();
                        g.set_weight(self.rng.float());
                        g.set_kind(self.rng.word());
                    }
                }
                _ => {
                    if let Some(h) = self.hero_in_state(w) {
                        h.borrow_mut().set_x(self.rng.float());
                    }
                }
            }
        }
    }

    /// Events: `{"full": hex, "json": …}` for a joining client, `{"patch": hex|null, "json": …}`.
    pub fn run(seed: u64, operations: usize) -> String {
        let mut soak = Soak { rng: Rng(seed.max(1)), gear: Vec::new(), heroes: Vec::new(), next_key: 0 };
        let mut w = StateEncoder::new(World::default());
        let mut events = Vec::new();
        let full = w.full_state();
        events.push(format!(r#"{{"full":"{}","json":{}}}"#, hex(&full), w.to_json()));
        let mut until_patch = 1 + soak.rng.below(8);
        for _ in 0..operations {
            soak.step(&mut w);
            if soak.rng.chance(4) {
                let full = w.full_state();
                events.push(format!(r#"{{"full":"{}","json":{}}}"#, hex(&full), w.to_json()));
            }
            until_patch -= 1;
            if until_patch == 0 {
                until_patch = 1 + soak.rng.below(8);
                let patch = match w.patch() {
                    Some(p) => format!("\"{}\"", hex(&p)),
                    None => "null".into(),
                };
                events.push(format!(r#"{{"patch":{patch},"json":{}}}"#, w.to_json()));
                if soak.rng.chance(10) {
                    // A full state with nothing pending.
                    let full = w.full_state();
                    events.push(format!(r#"{{"full":"{}","json":{}}}"#, hex(&full), w.to_json()));
                }
            }
        }
        format!(
            r#"{{"reflection":{{"v4":"{}","v5":"{}"}},"events":[{}]}}"#,
            hex(&StateEncoder::<World>::reflection(SchemaVersion::V4)),
            hex(&StateEncoder::<World>::reflection(SchemaVersion::V5)),
            events.join(",")
        )
    }
}
