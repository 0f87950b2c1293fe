// The scenarios of `schema/src/bin/schema-scenarios/main.rs`, written against the official encoder.
// Each has the shapes (version-neutral, see defineShapes), a builder for the initial state and
// the same named steps as the Rust side. Instances are built with every field assigned in
// declaration order, as a Rust struct always has all of its fields.

const make = (Class, props) => Object.assign(new Class(), props);

export const scenarios = {
  primitives: {
    shapes: [
      ["Prims", {
        s: "string", n: "number", b: "boolean", int8: "int8", uint8: "uint8", int16: "int16",
        uint16: "uint16", int32: "int32", uint32: "uint32", int64: "int64", uint64: "uint64",
        float32: "float32", float64: "float64", opt: "string", count: "number",
      }],
    ],
    build: (T) => make(T.Prims, {
      s: "hello", n: 1.5, b: true, int8: -5, uint8: 200, int16: -300, uint16: 60000, int32: -70000,
      uint32: 4000000000, int64: -(2 ** 40), uint64: 2 ** 50, float32: 0.1, float64: 0.1, opt: "x", count: 5,
    }),
    steps: {
      "n=100000": (s) => { s.n = 100000; },
      "n=0.1": (s) => { s.n = 0.1; },
      "n=1e12": (s) => { s.n = 1e12; },
      "n=-2.5": (s) => { s.n = -2.5; },
      "n=2^31": (s) => { s.n = 2 ** 31; },
      all: (s) => {
        s.s = "a longer string that needs the str8 tag, more than 31 bytes";
        s.n = -1; s.b = false; s.int8 = 127; s.uint8 = 0; s.int16 = 32767; s.uint16 = 1;
        s.int32 = -(2 ** 31); s.uint32 = 7; s.int64 = 2 ** 50; s.uint64 = 3; s.float32 = -2.25;
        s.float64 = 1e-300; s.count = 300;
      },
      "opt=undefined": (s) => { s.opt = undefined; },
      "opt=y": (s) => { s.opt = "y"; },
      "opt=undefined,z": (s) => { s.opt = undefined; s.opt = "z"; },
      same: (s) => { s.s = "a longer string that needs the str8 tag, more than 31 bytes"; },
      unicode: (s) => { s.s = "héllo 🌍"; },
    },
  },

  nested: {
    shapes: [
      ["Vec2", { x: "number", y: "number" }],
      ["Body", { pos: { ref: "Vec2" }, vel: { ref: "Vec2" }, mass: "float32" }],
      ["World", { body: { ref: "Body" }, name: "string" }],
    ],
    build: (T) => make(T.World, {
      body: make(T.Body, { pos: make(T.Vec2, { x: 1, y: 2 }), mass: 3.5 }),
      name: "w",
    }),
    steps: {
      "pos.x=5": (s) => { s.body.pos.x = 5; },
      "vel=new": (s, T) => { s.body.vel = make(T.Vec2, { x: 0.5, y: 0 }); },
      "pos=new": (s, T) => { s.body.pos = make(T.Vec2, { x: 9, y: 9 }); },
      "vel=undefined": (s) => { s.body.vel = undefined; },
      "body=new": (s, T) => { s.body = make(T.Body, { pos: make(T.Vec2, { x: -1, y: -1 }), mass: 1 }); },
      name: (s) => { s.name = "world"; },
    },
  },

  maps: {
    shapes: [
      ["Item", { name: "string", qty: "uint8" }],
      ["Inventory", { items: { map: "Item" }, counts: { map: "int32" } }],
    ],
    build: (T) => new T.Inventory(),
    steps: {
      "add a,b": (s, T) => {
        s.items.set("a", make(T.Item, { name: "apple", qty: 1 }));
        s.items.set("b", make(T.Item, { name: "bread", qty: 2 }));
      },
      "remove a": (s) => { s.items.delete("a"); },
      "re-add a": (s, T) => { s.items.set("a", make(T.Item, { name: "apricot", qty: 3 })); },
      "remove+add b": (s, T) => {
        s.items.delete("b");
        s.items.set("b", make(T.Item, { name: "bagel", qty: 4 }));
      },
      "replace a": (s, T) => { s.items.set("a", make(T.Item, { name: "avocado", qty: 5 })); },
      "a.qty": (s) => { s.items.get("a").qty = 6; },
      "counts x,y": (s) => { s.counts.set("x", 1); s.counts.set("y", 2); },
      "counts x=5": (s) => { s.counts.set("x", 5); },
      "counts remove y": (s) => { s.counts.delete("y"); },
      "counts clear": (s) => { s.counts.clear(); },
      "counts clear+add": (s) => { s.counts.set("p", 1); s.counts.clear(); s.counts.set("q", -7); },
      "items clear": (s) => { s.items.clear(); },
    },
  },

  array_primitives: {
    shapes: [["Lists", { names: { array: "string" }, nums: { array: "number" } }]],
    build: (T) => {
      const s = new T.Lists();
      s.names.push("a", "b", "c");
      return s;
    },
    steps: {
      "push d": (s) => { s.names.push("d"); },
      pop: (s) => { s.names.pop(); },
      "splice(1,1)": (s) => { s.names.splice(1, 1); },
      "[0]=z": (s) => { s.names[0] = "z"; },
      "push e,f": (s) => { s.names.push("e", "f"); },
      "pop,push g": (s) => { s.names.pop(); s.names.push("g"); },
      "unshift m": (s) => { s.names.unshift("m"); },
      shift: (s) => { s.names.shift(); },
      clear: (s) => { s.names.clear(); },
      "push h": (s) => { s.names.push("h"); },
      "clear,push i,j": (s) => { s.names.clear(); s.names.push("i", "j"); },
      nums: (s) => { s.nums.push(1.5, 2, -3); },
      "nums[1]=0.25": (s) => { s.nums[1] = 0.25; },
    },
  },

  array_structs: {
    shapes: [
      ["Unit", { hp: "uint16", tag: "string" }],
      ["Army", { units: { array: "Unit" } }],
    ],
    build: (T) => {
      const s = new T.Army();
      s.units.push(make(T.Unit, { hp: 10, tag: "u1" }), make(T.Unit, { hp: 20, tag: "u2" }), make(T.Unit, { hp: 30, tag: "u3" }));
      return s;
    },
    steps: {
      "u2.hp": (s) => { s.units[1].hp = 5; },
      "push u4": (s, T) => { s.units.push(make(T.Unit, { hp: 40, tag: "u4" })); },
      "splice(1,1)": (s) => { s.units.splice(1, 1); },
      pop: (s) => { s.units.pop(); },
      "[0]=new": (s, T) => { s.units[0] = make(T.Unit, { hp: 99, tag: "n" }); },
      clear: (s) => { s.units.clear(); },
      "push u5": (s, T) => { s.units.push(make(T.Unit, { hp: 50, tag: "u5" })); },
    },
  },

  replace_collections: {
    shapes: [
      ["Item", { name: "string", qty: "uint8" }],
      ["Holder", { m: { map: "number" }, a: { array: "string" }, c: { ref: "Item" } }],
    ],
    build: (T) => {
      const s = new T.Holder();
      s.m.set("k", 1);
      s.a.push("x");
      s.c = make(T.Item, { name: "c", qty: 1 });
      return s;
    },
    steps: {
      "m=new": (s, T, S) => { s.m = new S.MapSchema({ z: 2 }); },
      "a=new": (s, T, S) => { s.a = new S.ArraySchema("q", "r"); },
      "c=new": (s, T) => { s.c = make(T.Item, { name: "d", qty: 2 }); },
      "c=undefined": (s) => { s.c = undefined; },
    },
  },

  shared_refs: {
    shapes: [
      ["Pt", { v: "int32" }],
      ["Sharing", { a: { ref: "Pt" }, b: { ref: "Pt" }, m: { map: "Pt" }, l: { array: "Pt" } }],
    ],
    build: (T) => {
      // Kept across steps, as the Rust scenario keeps its handles.
      T.p = make(T.Pt, { v: 1 });
      T.q = make(T.Pt, { v: 10 });
      return new T.Sharing();
    },
    steps: {
      "a=b=m.k=p": (s, T) => { s.a = T.p; s.b = T.p; s.m.set("k", T.p); },
      "p.v=2": (s, T) => { T.p.v = 2; },
      "b=undefined": (s) => { s.b = undefined; },
      "m.remove(k)": (s) => { s.m.delete("k"); },
      "a=undefined": (s) => { s.a = undefined; },
      "a=p again": (s, T) => { s.a = T.p; },
      "l=[q,q]": (s, T) => { s.l.push(T.q, T.q); },
      "q.v=11": (s, T) => { T.q.v = 11; },
      "l.pop": (s) => { s.l.pop(); },
    },
  },

  arena: {
    shapes: [
      ["ArenaPlayer", { x: "number", y: "number" }],
      ["Arena", { players: { map: "ArenaPlayer" } }],
    ],
    build: (T) => new T.Arena(),
    steps: {
      "A joins": (s, T) => { s.players.set("MhW2NG5DX", make(T.ArenaPlayer, { x: 0, y: 0 })); },
      "A moves": (s) => { const a = s.players.get("MhW2NG5DX"); a.x = 7; a.y = 9; },
      "B joins": (s, T) => { s.players.set("UyyWFYn_9", make(T.ArenaPlayer, { x: 0, y: 0 })); },
      "A moves again": (s) => { const a = s.players.get("MhW2NG5DX"); a.x = 1.5; a.y = -2.25; },
      "B leaves": (s) => { s.players.delete("UyyWFYn_9"); },
    },
  },

  multi_order: {
    shapes: [
      ["ArenaPlayer", { x: "number", y: "number" }],
      ["Arena", { players: { map: "ArenaPlayer" } }],
    ],
    build: (T) => {
      const s = new T.Arena();
      for (const k of ["p1", "p2", "p3"]) s.players.set(k, make(T.ArenaPlayer, { x: 0, y: 0 }));
      return s;
    },
    steps: {
      "p3 then p1 move": (s) => { s.players.get("p3").x = 3; s.players.get("p1").x = 1; },
      "p2 y then x": (s) => { const p2 = s.players.get("p2"); p2.y = 2; p2.x = 2.5; },
    },
  },

  renamed: {
    shapes: [["Camel", { playerCount: "uint8", TTL: "uint16", roomName: "string" }]],
    build: (T) => make(T.Camel, { playerCount: 2, TTL: 300, roomName: "lobby" }),
    steps: {
      playerCount: (s) => { s.playerCount = 3; },
    },
  },

  plain: {
    shapes: [
      ["Seat", { name: "string", mark: "uint8" }],
      ["Game", {
        turn: "string", round: "uint32", winner: "string", board: { array: "uint8" },
        scores: { map: "int32" }, seats: { map: "Seat" }, lead: { ref: "Seat" },
      }],
    ],
    build: (T) => {
      const s = make(T.Game, { turn: "", round: 0 });
      s.board.push(0, 0, 0, 0, 0, 0, 0, 0, 0);
      return s;
    },
    steps: {
      "turn=a": (s) => { s.turn = "a"; },
      "turn=a again": (s) => { s.turn = "a"; },
      "round,winner": (s) => { s.round = 2; s.winner = "b"; },
      "winner=undefined": (s) => { s.winner = undefined; },
      "board[4]=1": (s) => { s.board[4] = 1; },
      "board[4]=1 again": (s) => { s.board[4] = 1; },
      "board[0]=2,[8]=1": (s) => { s.board[0] = 2; s.board[8] = 1; },
      "seats a,b": (s, T) => {
        s.seats.set("a", make(T.Seat, { name: "ann", mark: 0 }));
        s.seats.set("b", make(T.Seat, { name: "bob", mark: 0 }));
      },
      "a.mark=1": (s) => { s.seats.get("a").mark = 1; },
      "scores x,y": (s) => { s.scores.set("x", 1); s.scores.set("y", 2); },
      "scores.x+=5": (s) => { s.scores.set("x", s.scores.get("x") + 5); },
      "lead=a": (s) => { s.lead = s.seats.get("a"); },
      "lead.name": (s) => { s.lead.name = "anne"; },
      "lead=undefined": (s) => { s.lead = undefined; },
      "every mark+1": (s) => { for (const seat of s.seats.values()) seat.mark += 1; },
      "board=new": (s, T, S) => { s.board = new S.ArraySchema(0, 0, 0, 0, 0, 0, 0, 0, 0); },
      "every cell=2": (s) => { for (let i = 0; i < s.board.length; i++) s.board[i] = 2; },
    },
  },
};
