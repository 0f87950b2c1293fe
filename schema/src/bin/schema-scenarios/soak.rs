//! The random-mutation soak: a nested state, seeded operations, a patch every few operations
//! and now and then a full state for a joining client.

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
