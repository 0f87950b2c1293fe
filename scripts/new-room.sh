#!/usr/bin/env bash
# Writes a new room crate at DIR: a small but real room on the guest SDK (synchronised state, a
# message, a request, joins and leaves, TestRoom unit tests), a @colyseus/sdk 0.18 client script
# that plays it, and a README with the commands. The room type and the crate are named after
# DIR's last path component.
#
#   scripts/new-room.sh DIR [GIT_URL]     (`just new-room DIR [GIT_URL]`)
#
# Anywhere but this checkout's plugins/, the crate is a workspace of its own (an empty
# [workspace] table, so a workspace around DIR does not claim it) with this repository's
# toolchain file and wasm profile, and it depends on the SDK by this checkout's absolute path, or
# by GIT_URL when one is given. Under plugins/ it is a member of this workspace instead, built
# by `just plugins` like the example rooms. It builds and passes `cargo test` as written.
set -euo pipefail

usage="usage: $0 DIR [GIT_URL]   (a new room crate at DIR, named after DIR's last component)"
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
    echo "$usage" >&2
    exit 2
fi
dir="$1"
git_url="${2:-}"
repo="$(cd "$(dirname "$0")/.." && pwd -P)"

fail() {
    echo "new-room: $*" >&2
    exit 1
}

# The room type is the name clients matchmake with, and the host accepts [A-Za-z0-9_-]{1,64};
# the package name also has to suit Cargo, which refuses capitals in new names, a leading digit
# and Rust keywords.
name="$(basename -- "${dir%/}")"
if ! [[ "$name" =~ ^[a-z][a-z0-9_-]{0,63}$ ]]; then
    fail "\"$name\" cannot name a room: use 1 to 64 lowercase letters, digits, '-' and '_', starting with a letter (it is DIR's last path component)"
fi
lib="${name//-/_}"
reserved=" as async await break const continue crate dyn else enum extern false fn for gen if impl in
    let loop match mod move mut pub ref return self static struct super trait true type unsafe use where
    while abstract become box do final macro override priv try typeof unsized virtual yield
    std core alloc test proc_macro serde serde_json odeon_guest odeon_schema odeon_protocol "
if [[ "$reserved" =~ [[:space:]]$lib[[:space:]] ]]; then
    fail "\"$name\" is a Rust keyword or the name of a crate the room uses; pick another name"
fi
if [ -e "$dir" ] && ! [ -d "$dir" ]; then
    fail "$dir exists and is not a directory"
fi
if [ -d "$dir" ] && [ -n "$(ls -A -- "$dir")" ]; then
    fail "$dir already exists and is not empty; new-room only writes into a new or empty directory"
fi

# The type that implements Room: the name in CamelCase, ending in "Room" (so it never collides
# with the crate's State and Player).
type=""
IFS='-_' read -ra parts <<<"$name"
for part in "${parts[@]}"; do type+="${part^}"; done
[[ "$type" == ?*Room ]] || type+="Room"

# Under this checkout's plugins/, the workspace's `plugins/*` glob makes the crate a member; a
# crate there with a [workspace] of its own would break every build of this workspace.
member=false
parent="$(dirname -- "${dir%/}")"
if [ -d "$parent" ] && [ "$(cd -- "$parent" && pwd -P)" = "$repo/plugins" ]; then
    member=true
    [ -z "$git_url" ] || fail "a room under $repo/plugins is a member of this workspace and uses its SDK by path; GIT_URL is for rooms outside it"
fi
mkdir -p -- "$dir"
dir="$(cd -- "$dir" && pwd -P)"

# Writes stdin to $dir/$1 with the placeholders filled in.
emit() {
    local text
    text="$(cat)"
    text="${text//__NAME__/"$name"}"
    text="${text//__LIB__/"$lib"}"
    text="${text//__TYPE__/"$type"}"
    text="${text//__REPO__/"$repo"}"
    mkdir -p -- "$(dirname -- "$dir/$1")"
    printf '%s\n' "$text" >"$dir/$1"
}

if $member; then
    emit Cargo.toml <<'EOF'
[package]
name = "__NAME__"
edition.workspace = true
rust-version.workspace = true
version.workspace = true
license.workspace = true
publish = false

[lib]
# cdylib: the .wasm the host loads; rlib: what `cargo test` links the unit tests against.
crate-type = ["cdylib", "rlib"]

[dependencies]
odeon-guest.workspace = true
serde.workspace = true

[dev-dependencies]
serde_json.workspace = true

[lints]
workspace = true
EOF
else
    if [ -n "$git_url" ]; then
        sdk="odeon-guest = { git = \"$git_url\" }"
    else
        sdk="odeon-guest = { path = \"$repo/guest-sdk\" }"
    fi
    # The wasm profile exactly as this repository builds its plugins.
    profile="$(awk '/^\[/ { on = ($0 == "[profile.wasm]") } on && NF' "$repo/Cargo.toml")"
    [ -n "$profile" ] || fail "no [profile.wasm] in $repo/Cargo.toml"
    emit Cargo.toml <<EOF
[package]
name = "__NAME__"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the .wasm the host loads; rlib: what \`cargo test\` links the unit tests against.
crate-type = ["cdylib", "rlib"]

[dependencies]
$sdk
serde = { version = "1", features = ["derive"] }

[dev-dependencies]
serde_json = "1"

# Its own workspace, even inside another one's directory.
[workspace]

# Small, fast wasm without LTO's link time: \`cargo build --target wasm32-wasip1 --profile wasm\`.
$profile
EOF
    # This repository's toolchain and formatting, so the room builds and reads as its rooms do,
    # and its lockfile, so it builds with the crate versions Odeon is tested with (and offline
    # once this checkout has built; cargo drops what the room does not use).
    cp "$repo/rust-toolchain.toml" "$repo/rustfmt.toml" "$repo/Cargo.lock" "$dir/"
fi

emit .gitignore <<'EOF'
/target
node_modules/
EOF

emit src/lib.rs <<'EOF'
//! The `__NAME__` room: a counter every player can raise, and the players who are in, as
//! synchronised state. Written by Odeon's `just new-room`; change it freely (README.md has the
//! commands to build, test, run and play it).
//!
//! | from the client | what the room does |
//! |---|---|
//! | join, options `{name}` | adds a player, under the client's session id, to `state.players` |
//! | `send("increment", {by})` | adds `by` (1 to 10; 1 without a payload) to `state.count` and 1 to the sender's `clicks`; any other `by` is error 4100 to the sender |
//! | `request("increment", {by})` | the same, answered with the new count; a bad `by` rejects the request with the reason `{code: 4100, message}` |
//! | `request("stats")` | answers `{count, players}` |
//! | leave | removes the player |

use odeon_guest::prelude::*;

/// The most one `increment` adds.
const MAX_STEP: u32 = 10;
/// The code of a refused `increment`: `room.onError` for a send, `error.reason.code` for a request.
pub const BAD_INCREMENT: u32 = 4100;

/// A player, as every client sees it in `room.state.players`.
#[derive(Schema, Default)]
pub struct Player {
    name: String,
    clicks: u32,
}

/// The synchronised state: `room.state` on every client.
#[derive(Schema, Default)]
pub struct State {
    count: u32,
    players: MapSchema<Player>,
}

/// The room. Everything it keeps is in its state, `ctx.state`, whose changes the SDK sends to
/// every client.
pub struct __TYPE__;

/// `increment`'s payload.
#[derive(Deserialize)]
struct Increment {
    #[serde(default = "one")]
    by: u32,
}

fn one() -> u32 {
    1
}

/// The join options.
#[derive(Deserialize, Default)]
struct JoinOptions {
    name: Option<String>,
}

/// What `stats` answers.
#[derive(Serialize)]
struct Stats {
    count: u32,
    players: usize,
}

impl Room for __TYPE__ {
    const NAME: &'static str = "__NAME__";
    type State = State;
    type UserData = ();

    fn on_create(ctx: &mut Ctx<State>, _options: Payload) -> Result<Self, RoomError> {
        ctx.set_max_clients(16);
        Ok(__TYPE__)
    }

    /// One handler per message type; each answers a `send` and a `request` of its type alike.
    fn handlers(on: &mut Handlers<Self>) {
        on.message("increment", Self::increment).message("stats", Self::stats);
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx<State>,
        client: &Client,
        options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        let JoinOptions { name } = options.decode()?;
        let name = name.unwrap_or_else(|| client.session_id().to_owned());
        ctx.state.players.insert(client.session_id(), Player { name, clicks: 0 });
        Ok(())
    }

    fn on_leave(&mut self, ctx: &mut Ctx<State>, client: &Client, _code: u16) {
        ctx.state.players.remove(client.session_id());
    }
}

impl __TYPE__ {
    /// `increment {by}`: adds `by` to the count and 1 to the sender's clicks, and answers the new
    /// count. A `by` out of range is refused (`Err`), and the sender learns why.
    fn increment(
        &mut self,
        ctx: &mut Ctx<State>,
        client: &Client,
        Increment { by }: Increment,
    ) -> Result<u32, Reject> {
        let refusal = format!("increment by 1 to {MAX_STEP}, not {by}");
        Reject::unless((1..=MAX_STEP).contains(&by), BAD_INCREMENT, refusal)?;
        ctx.state.count = ctx.state.count.saturating_add(by);
        if let Some(mut player) = ctx.state.players.get_mut(client.session_id()) {
            player.clicks += 1;
        }
        Ok(ctx.state.count)
    }

    /// `stats`: the count and how many players are in.
    fn stats(&mut self, ctx: &mut Ctx<State>, _client: &Client, (): ()) -> Result<Stats, Reject> {
        Ok(Stats { count: ctx.state.count, players: ctx.state.players.len() })
    }
}

export_room!(__TYPE__);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::INVALID_PAYLOAD;
    use odeon_guest::testing::{RequestStatus, TestRoom};
    use serde_json::{Value as Json, json};

    /// A room with Ada (session `a`) and an unnamed `b`.
    fn room_with_two() -> TestRoom<__TYPE__> {
        let mut room = TestRoom::<__TYPE__>::create(()).unwrap();
        room.join("a", json!({"name": "Ada"})).unwrap();
        room.join("b", ()).unwrap();
        room
    }

    /// The state as client `sid` holds it, decoded from the frames it got.
    fn state(room: &TestRoom<__TYPE__>, sid: &str) -> Json {
        serde_json::from_str(&room.client_state(sid)).unwrap()
    }

    #[test]
    fn players_are_in_the_state_while_they_are_in_the_room() {
        let mut room = room_with_two();
        let ada = json!({"name": "Ada", "clicks": 0});
        assert_eq!(state(&room, "a"), json!({"count": 0, "players": {"a": ada, "b": {"name": "b", "clicks": 0}}}));
        room.leave("b", 4000);
        assert_eq!(state(&room, "a"), json!({"count": 0, "players": {"a": ada}}));
    }

    #[test]
    fn increment_raises_the_count_and_the_senders_clicks() {
        let mut room = room_with_two();
        room.message("a", "increment", &json!({"by": 3}));
        room.message_empty("b", "increment");
        room.message("b", "increment", &json!({}));
        let players = json!({"a": {"name": "Ada", "clicks": 1}, "b": {"name": "b", "clicks": 2}});
        assert_eq!(state(&room, "b"), json!({"count": 5, "players": players}));
        assert!(room.errors_to("a").is_empty() && room.errors_to("b").is_empty());
    }

    #[test]
    fn a_bad_increment_is_an_error_to_its_sender_and_changes_nothing() {
        let mut room = room_with_two();
        room.message("a", "increment", &json!({"by": 11}));
        room.message("a", "increment", &json!({"by": "two"}));
        let errors = room.errors_to("a");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0], (BAD_INCREMENT, "increment by 1 to 10, not 11".to_owned()));
        assert_eq!(errors[1].0, INVALID_PAYLOAD, "a payload that does not decode: {}", errors[1].1);
        assert!(room.errors_to("b").is_empty());
        assert_eq!(state(&room, "a")["count"], 0);
    }

    #[test]
    fn requests_answer_the_new_count_and_the_stats() {
        let mut room = room_with_two();
        let answer = room.request("a", "increment", &json!({"by": 2}));
        assert_eq!((answer.status, answer.decode::<u32>()), (RequestStatus::Ok, Some(2)));
        assert_eq!(state(&room, "a")["players"]["a"]["clicks"], 1);

        let refused = room.request("a", "increment", &json!({"by": 0}));
        let reason = json!({"code": BAD_INCREMENT, "message": "increment by 1 to 10, not 0"});
        assert_eq!((refused.status, refused.decode::<Json>()), (RequestStatus::Rejected, Some(reason)));

        let stats = room.request("b", "stats", &());
        assert_eq!((stats.status, stats.decode::<Json>()), (RequestStatus::Ok, Some(json!({"count": 2, "players": 2}))));
        assert_eq!(room.request("b", "nothing-here", &()).status, RequestStatus::Error);
    }
}
EOF

emit client/package.json <<'EOF'
{
  "name": "__NAME__-client",
  "version": "0.0.0",
  "private": true,
  "description": "Plays the __NAME__ room with the official Colyseus client",
  "type": "module",
  "engines": {
    "node": ">=20"
  },
  "scripts": {
    "play": "node play.mjs"
  },
  "dependencies": {
    "@colyseus/sdk": "0.18.4"
  }
}
EOF

emit client/play.mjs <<'EOF'
// Plays the `__NAME__` room with the official Colyseus client, @colyseus/sdk 0.18: joins, sends
// `increment` and waits for the state to show it, makes requests, prints what it sees, and
// leaves. Exits 0 when all was as expected, 1 otherwise (each step waits 10 s at most).
//
//   npm install && node play.mjs [ENDPOINT]     (ENDPOINT, or $ENDPOINT, default ws://127.0.0.1:2567)

import { Client } from "@colyseus/sdk";

const ROOM = "__NAME__";
const endpoint = process.argv[2] ?? process.env.ENDPOINT ?? "ws://127.0.0.1:2567";
const STEP_MS = 10000;

/** `promise`, or a failure naming `what` after STEP_MS. */
function within(what, promise) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${STEP_MS} ms waiting for ${what}`)), STEP_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once `holds(room.state)`, checked now and after every state change. */
function stateWhere(room, what, holds) {
    return within(what, new Promise((resolve) => {
        const check = () => {
            if (!holds(room.state)) return;
            room.onStateChange.remove(check);
            resolve(room.state);
        };
        room.onStateChange(check);
        check();
    }));
}

function expect(condition, what) {
    if (!condition) throw new Error(`expected ${what}`);
}

async function play() {
    console.log(`joining "${ROOM}" at ${endpoint}`);
    const room = await within(`joinOrCreate("${ROOM}")`, new Client(endpoint).joinOrCreate(ROOM, { name: "play.mjs" }));
    console.log(`joined room ${room.roomId} as ${room.sessionId}`);
    room.onError((code, message) => console.error(`room error ${code}: ${message}`));
    const me = (state) => state?.players?.get(room.sessionId);

    await stateWhere(room, "our player in room.state", (state) => me(state) !== undefined);
    console.log(`state: count ${room.state.count}, players ${[...room.state.players.keys()].join(", ")}`);

    // A message: the answer is the state changing.
    const before = room.state.count;
    room.send("increment", { by: 2 });
    await stateWhere(room, "our increment in room.state", (state) => me(state)?.clicks === 1);
    console.log(`after send("increment", {by: 2}): count ${room.state.count}, our clicks ${me(room.state).clicks}`);
    expect(room.state.count >= before + 2, `count ${room.state.count} to be at least ${before + 2}`);

    // Requests: answered with a value, or rejected with the room's reason in `error.reason`.
    const count = await within('request("increment")', room.request("increment", { by: 3 }));
    console.log(`request("increment", {by: 3}) answered ${count}`);
    expect(typeof count === "number" && count >= before + 5, `a count of at least ${before + 5}, got ${count}`);
    const refused = await within('request("increment", {by: 100})', room.request("increment", { by: 100 }).then(
        (value) => { throw new Error(`expected a rejection, got ${JSON.stringify(value)}`); },
        (error) => error,
    ));
    console.log(`request("increment", {by: 100}) rejected: ${refused.reason?.code} ${refused.reason?.message}`);
    expect(refused.name === "rejected" && refused.reason?.code === 4100 && /not 100/.test(refused.reason?.message),
        `a rejection with code 4100 naming 100, got ${refused} ${JSON.stringify(refused.reason)}`);
    const stats = await within('request("stats")', room.request("stats"));
    console.log(`request("stats") answered ${JSON.stringify(stats)}`);
    expect(stats.count >= count && stats.players >= 1, `stats with a count of at least ${count}`);

    await within("leave", room.leave());
    console.log("left; all as expected");
}

play().then(
    () => process.exit(0),
    (error) => {
        console.error(`play.mjs failed: ${error.message}`);
        process.exit(1);
    },
);
EOF

if $member; then
    build='From the repository root, `just plugins` builds every room under `plugins/`, this one
included, and copies each to `target/plugins/` (under `$CARGO_TARGET_DIR` when that is set):
this one is `target/plugins/__LIB__.wasm`. By hand: `cargo build --target wasm32-wasip1 --profile
wasm -p __NAME__` writes `target/wasm32-wasip1/wasm/__LIB__.wasm`.'
    test_cmd='cargo test -p __NAME__'
    run='`just run` (from the repository root) builds the plugins and starts a host on
ws://127.0.0.1:2567 that serves this room with the example rooms; extra arguments go to the host,
e.g. `just run --port 2568`.'
else
    build='```sh
cargo build --target wasm32-wasip1 --profile wasm
```

The plugin is `target/wasm32-wasip1/wasm/__LIB__.wasm` (under `$CARGO_TARGET_DIR` when that is
set). `rust-toolchain.toml` pins the Rust release Odeon is built with and adds its wasm32-wasip1
target; the `wasm` profile in `Cargo.toml` makes a small, fast module.'
    test_cmd='cargo test'
    run='A host serves every `*.wasm` in its plugins directory and watches it: a new build copied in
(written, then renamed) serves new rooms, while running rooms keep their version.

```sh
mkdir -p plugins && cp target/wasm32-wasip1/wasm/__LIB__.wasm plugins/
cargo run --manifest-path __REPO__/Cargo.toml -p odeon-host -- --plugins "$PWD/plugins"
```

That builds `odeon-host` in the Odeon checkout (at `__REPO__`) and starts it on
ws://127.0.0.1:2567; a built one runs as `odeon-host --plugins plugins`. `--port` changes the
port, and `odeon-host --help` lists every flag.'
fi
emit README.md <<EOF
# __NAME__

An Odeon room, written by \`just new-room\`: a counter every player can raise, and the players
who are in, as synchronised state (\`src/lib.rs\`). Clients join the room type \`__NAME__\`
with any Colyseus client SDK.

| from the client | what the room does |
|---|---|
| \`joinOrCreate("__NAME__", {name})\` | adds a player under the client's session id to \`room.state.players\` |
| \`room.send("increment", {by})\` | adds \`by\` (1 to 10; 1 without a payload) to \`room.state.count\`, and 1 to the sender's \`clicks\`; any other \`by\` sends the sender error 4100 (\`room.onError(code, message)\`), and a payload that does not decode error 4217 |
| \`room.request("increment", {by})\` | the same, resolved with the new count; a bad \`by\` rejects with an error whose \`name\` is \`"rejected"\` and whose \`reason\` is \`{code: 4100, message}\` |
| \`room.request("stats")\` | resolved with \`{count, players}\` |
| leaving | removes the player |

## Build

$build

## Test

\`\`\`sh
$test_cmd
\`\`\`

runs the room natively, with the SDK's \`TestRoom\` playing the host (the tests at the end of
\`src/lib.rs\`).

## Run

$run

## Play

\`\`\`sh
cd client
npm install
node play.mjs    # or: node play.mjs ws://127.0.0.1:2568
\`\`\`

\`play.mjs\` joins with the official client (@colyseus/sdk 0.18), sends \`increment\` and waits
for \`room.state\` to show it, makes the requests, prints what it sees, and exits 0 when all was
as expected (1 otherwise; each step waits 10 s at most).
EOF

# The formatting `cargo fmt` would give it where it lives (this repository's rustfmt.toml under
# plugins/, the defaults elsewhere), so a first `cargo fmt` changes nothing.
if command -v rustfmt >/dev/null; then
    (cd "$dir" && rustfmt --edition 2024 src/lib.rs)
fi

echo "new-room: wrote the \"$name\" room at $dir (README.md there has the commands)"
if $member; then
    echo "  build: just plugins   test: cargo test -p $name   run: just run"
else
    echo "  build: cd $dir && cargo build --target wasm32-wasip1 --profile wasm   test: cargo test"
fi
