# Odeon's one entry point. `just run` starts a host; `just test` is what CI runs.

set shell := ["bash", "-euo", "pipefail", "-c"]

target_dir := env_var_or_default("CARGO_TARGET_DIR", justfile_directory() / "target")
plugins_dir := target_dir / "plugins"
variants_dir := target_dir / "plugin-variants"

# Where the tests find the built plugins and host, and the MongoDB-wire server `just setup`
# installs.
export ODEON_PLUGINS_DIR := plugins_dir
export ODEON_PLUGIN_VARIANTS_DIR := variants_dir
export ODEON_HOST_BIN := target_dir / "debug" / "odeon-host"
export ODEON_PROXY_BIN := target_dir / "debug" / "odeon-proxy"
export SECANTUSD_PY := env_var_or_default("SECANTUSD_PY", env_var_or_default("ODEON_SECANTUS_VENV", home_directory() / ".cache" / "odeon" / "secantus-venv") / "bin" / "secantusd-py")

# Build the example plugins and start a host on 127.0.0.1:2567 with the embedded presence and
# driver; extra arguments go to the host, e.g. `just run --protocol 0.17`.
run *ARGS: plugins
    cargo run -p odeon-host -- --plugins "{{plugins_dir}}" {{ARGS}}

# Build every crate under plugins/ to wasm32-wasip1 and copy it to target/plugins/ (and the test
# builds of echo and arena to target/plugin-variants/).
plugins:
    #!/usr/bin/env bash
    set -euo pipefail
    scripts/setup.sh --wasm-target
    # "package library" per crate (scripts/plugin-crates.sh): a crate's .wasm is named after its
    # library, which is not always its package's or its directory's name.
    crates=$(scripts/plugin-crates.sh)
    cargo build --target wasm32-wasip1 --profile wasm $(awk '{print "-p", $1}' <<<"$crates")
    mkdir -p "{{plugins_dir}}"
    for lib in $(awk '{print $2}' <<<"$crates"); do
        # Copy then rename, so a running host's watcher never sees a half-written file.
        cp "{{target_dir}}/wasm32-wasip1/wasm/$lib.wasm" "{{plugins_dir}}/.$lib.wasm.tmp"
        mv "{{plugins_dir}}/.$lib.wasm.tmp" "{{plugins_dir}}/$lib.wasm"
    done
    # A second build of echo whose `build` message answers "v2", for the hot-load tests; its own
    # target directory, so the two builds do not keep rebuilding each other.
    cargo build --target wasm32-wasip1 --profile wasm -p echo --features v2 --target-dir "{{target_dir}}/variants"
    mkdir -p "{{variants_dir}}"
    cp "{{target_dir}}/variants/wasm32-wasip1/wasm/echo.wasm" "{{variants_dir}}/echo-v2.wasm"
    # And a test-only echo whose auth hook counts `{sessionAs}` as proven (session takeovers);
    # never in target/plugins, so neither `just run` nor `just cluster` serves it.
    cargo build --target wasm32-wasip1 --profile wasm -p echo --features trusted-sessions --target-dir "{{target_dir}}/variants"
    cp "{{target_dir}}/variants/wasm32-wasip1/wasm/echo.wasm" "{{variants_dir}}/echo-sessions.wasm"
    # Arena's builds for the live-migration tests: v2, a v2 whose migration fails, and a v2 with
    # a schema change clients cannot follow.
    for variant in v2:v2 v2-faulty:faulty v2-schema:schema-change; do
        cargo build --target wasm32-wasip1 --profile wasm -p arena --features "${variant#*:}" --target-dir "{{target_dir}}/variants"
        cp "{{target_dir}}/variants/wasm32-wasip1/wasm/arena.wasm" "{{variants_dir}}/arena-${variant%%:*}.wasm"
    done
    # Pilot's v2, for the test that input acks stay in step across a live migration.
    cargo build --target wasm32-wasip1 --profile wasm -p pilot --features v2 --target-dir "{{target_dir}}/variants"
    cp "{{target_dir}}/variants/wasm32-wasip1/wasm/pilot.wasm" "{{variants_dir}}/pilot-v2.wasm"

# scripts/new-room.sh: DIR is relative to where `just` runs and its last component names the
# room; the crate uses this checkout's SDK by path, or GIT_URL's, and under plugins/ it is a member
# of this workspace. Writes a new room crate that builds and tests as it is: `just new-room ../dice`.
[no-cd]
[positional-arguments]
new-room DIR GIT_URL="":
    @"{{justfile_directory()}}/scripts/new-room.sh" "$@"

# scripts/dev.sh: the edit-run loop of the room crate at DIR (relative to where `just` runs; one
# `just new-room` wrote, or one under plugins/). Builds it to wasm, starts a host serving it on
# 127.0.0.1:2567 (extra arguments go to the host, e.g. `--port 2568`), and on every save of its
# src/ or Cargo.toml builds it again and hot-loads it: new rooms get the new build, running rooms
# keep theirs, and a failed build leaves the last good one serving. Ctrl-C stops both.
[no-cd]
[positional-arguments]
dev DIR *ARGS:
    cargo build --manifest-path "{{justfile_directory()}}/Cargo.toml" -p odeon-host
    @"{{justfile_directory()}}/scripts/dev.sh" "$@"

# Formatting and clippy, host and wasm targets.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --target wasm32-wasip1 -p odeon-guest $(scripts/plugin-crates.sh | awk '{print "-p", $1}') -- -D warnings

# Installs what the tests need once (wasm target, npm packages, redis-server, SecantusDB);
# after that it only checks, in well under a second.
setup:
    scripts/setup.sh

# Everything CI checks: set-up, lint, unit and host integration tests (real redis-server and a
# MongoDB-wire server), the schema encoder against the official @colyseus/schema, then the
# end-to-end suite.
test: setup plugins lint
    cargo test --workspace
    just schema
    just e2e

# The Rust schema encoder checked byte for byte and by decoding against @colyseus/schema 4 and 5.
schema:
    cd tests/schema && if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi && npm test

# Benchmarks (not part of `just test`), each against a baseline measured in the same run:
# the arena workload against the real Colyseus 0.18 (server pinned to CPU 0, load generator to
# CPU 1; Markdown to target/bench/BENCHMARKS-run.md, plot to target/bench/plot.svg), then the
# guest-boundary and state-encoding micro-benchmarks. `just bench --quick` is a smoke run. The
# Markdown also has odeon-proxy against nginx in front of one host (`--workloads proxy` alone)
# and deploys on three hosts with live migration's pauses (`--workloads deploy` alone).
bench *ARGS: plugins
    bench/setup.sh
    cargo build --release -p odeon-host -p odeon-loadgen -p odeon-proxy
    cd bench/colyseus-peer && if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi
    mkdir -p "{{target_dir}}/bench"
    "{{target_dir}}/release/odeon-bench" --out "{{target_dir}}/bench/BENCHMARKS-run.md" --svg "{{target_dir}}/bench/plot.svg" {{ARGS}}
    cargo bench -p odeon-host --bench guest
    cargo bench -p odeon-schema --bench encode
    cd tests/schema && if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi && CARGO_TARGET_DIR="{{target_dir}}" node bench.mjs

# Coverage-guided fuzzing of frames, msgpackr, matchmaking bodies and ABI records (not part of
# `just test`, which runs the same decoders as bounded property tests): `just fuzz 300`.
fuzz SECS="60" *TARGETS:
    scripts/fuzz.sh {{SECS}} {{TARGETS}}

# The end-to-end suite: the real host binary driven by the official Colyseus SDKs from npm.
e2e: plugins
    cargo build -p odeon-host -p odeon-proxy
    cd tests && if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi && npm test

# Starts redis-server, SecantusDB, N hosts on ports 3001 … 3000+N sharing Redis presence and
# MongoDB listings, and odeon-proxy on 127.0.0.1:8080 in front of them (scripts/cluster.sh);
# clients use the proxy's address. Ctrl-C stops them all.
cluster N="3": setup plugins
    cargo build -p odeon-host -p odeon-proxy
    scripts/cluster.sh {{N}}
