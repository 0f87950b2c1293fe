#!/usr/bin/env bash
# A room's edit-run loop: builds the room crate at DIR to wasm, starts odeon-host serving it (on
# 127.0.0.1:2567 unless HOST_ARGS say otherwise), and on every save under DIR/src or of
# DIR/Cargo.toml builds it again and installs the new .wasm in the host's plugins directory; the
# host hot-loads it, so new rooms get the new build and running rooms keep theirs. A build that
# fails prints cargo's errors and changes nothing. The host's output, the room's logs among it
# (RUST_LOG defaults to info,guest=debug), prints here, and after each install the script says
# when the host has loaded the build (or refused it). Ctrl-C stops the host and this script
# (status 0).
#
#   scripts/dev.sh DIR [HOST_ARGS...]     (`just dev DIR [HOST_ARGS...]`)
#
# DIR is a crate as `just new-room` writes it: a crate of its own anywhere, built into its own
# target directory (DIR/target, or $ODEON_DEV_TARGET_DIR) so it never waits for the workspace's
# builds, or a member under this checkout's plugins/, built with the workspace. The host is
# $ODEON_HOST_BIN, or else this checkout's odeon-host, built with cargo. Saves are found by
# polling every 300 ms, which needs no file-watching tool.
set -euo pipefail

usage="usage: $0 DIR [HOST_ARGS...]   (a room crate's directory; HOST_ARGS go to odeon-host, e.g. --port 2568)"
if [ $# -lt 1 ] || [ -z "$1" ]; then
    echo "$usage" >&2
    exit 2
fi
dir="$1"
shift
repo="$(cd "$(dirname "$0")/.." && pwd -P)"

fail() {
    echo "dev: $*" >&2
    exit 1
}

[ -f "$dir/Cargo.toml" ] && [ -d "$dir/src" ] ||
    fail "$dir is not a room crate (no Cargo.toml and src/ there); \`just new-room DIR\` writes one"
dir="$(cd -- "$dir" && pwd -P)"
crate="$("$repo/scripts/plugin-crates.sh" "$dir/Cargo.toml")" || fail "cannot read the crate's names from $dir/Cargo.toml"
read -r package lib <<<"$crate"

# The build command the crate's README gives.
if [ "$(dirname -- "$dir")" = "$repo/plugins" ]; then
    build=(cargo build --target wasm32-wasip1 --profile wasm -p "$package")
    build_in="$repo"
    target="${CARGO_TARGET_DIR:-$repo/target}"
else
    build=(cargo build --target wasm32-wasip1 --profile wasm)
    build_in="$dir"
    target="${ODEON_DEV_TARGET_DIR:-$dir/target}"
fi
wasm="$target/wasm32-wasip1/wasm/$lib.wasm"

host_bin="${ODEON_HOST_BIN:-}"
if [ -z "$host_bin" ]; then
    echo "dev: building odeon-host"
    cargo build --manifest-path "$repo/Cargo.toml" -p odeon-host
    host_bin="${CARGO_TARGET_DIR:-$repo/target}/debug/odeon-host"
fi
[ -x "$host_bin" ] || fail "no odeon-host at $host_bin"

state="$(mktemp -d "${TMPDIR:-/tmp}/odeon-dev.XXXXXX")"
plugins="$state/plugins"
mkdir "$plugins"
# The host writes here; a `tail` prints it, and the script reads it for the host's word on
# each build it installs.
log="$state/host.log"
: >"$log"
host=""
tailer=""

# Stops the host by its process group (whatever it started goes too) and forgets the plugins
# directory. The host closes its rooms within a few seconds; after 10 it is killed.
stop() {
    if [ -n "$host" ] && kill -0 -- "-$host" 2>/dev/null; then
        echo "dev: stopping odeon-host (process group $host)"
        kill -TERM -- "-$host" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 -- "-$host" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$host" 2>/dev/null || true
    fi
    if [ -n "$tailer" ]; then
        # The host's last lines printed first.
        sleep 0.3
        kill "$tailer" 2>/dev/null || true
    fi
    rm -rf -- "$state"
}
trap stop EXIT
# Ctrl-C is how this loop is meant to end: a clean stop, not a failure.
trap 'exit 0' INT
trap 'exit 143' TERM

# Builds the room and, when that gives a new .wasm, installs it: written beside the old one, then
# renamed over it, so the host's watcher never reads half a file.
build_and_install() {
    echo "dev: building $package: ${build[*]}"
    if ! (cd "$build_in" && CARGO_TARGET_DIR="$target" "${build[@]}"); then
        echo "dev: the build failed (cargo's errors above); the host keeps serving the last good build" >&2
        return 0
    fi
    if cmp -s "$wasm" "$plugins/$lib.wasm"; then
        echo "dev: $lib.wasm is unchanged"
        return 0
    fi
    local seen_lines
    seen_lines="$(wc -l <"$log")"
    cp "$wasm" "$plugins/.$lib.wasm.tmp"
    mv "$plugins/.$lib.wasm.tmp" "$plugins/$lib.wasm"
    if [ -z "$host" ]; then
        echo "dev: installed $lib.wasm; the host loads it as it starts"
        return 0
    fi
    echo "dev: installed $lib.wasm; waiting for the host to load it"
    # The host's watcher takes a moment (it waits for writes to settle): until it logs the load,
    # new rooms still get the previous build.
    local word=""
    for _ in $(seq 100); do
        word="$(tail -n "+$((seen_lines + 1))" "$log" | grep -a -E "(loaded (new )?plugin|refused plugin).*$lib\.wasm" | tail -n 1 || true)"
        [ -z "$word" ] || break
        sleep 0.1
    done
    case "$word" in
    *"refused plugin"*) echo "dev: the host refused $lib.wasm (its reason above); the last good build keeps serving" >&2 ;;
    "") echo "dev: the host has not said it loaded $lib.wasm within 10 s (its output is above)" >&2 ;;
    *) echo "dev: the host loaded $lib.wasm: new rooms get this build, running rooms keep theirs" ;;
    esac
}

# Every watched file's modification time, size and path: any save, new file or deletion changes it.
fingerprint() {
    { find "$dir/src" "$dir/Cargo.toml" -printf '%T@ %s %p\n' 2>/dev/null || true; } | sort | cksum
}

seen="$(fingerprint)"
build_and_install
[ -f "$plugins/$lib.wasm" ] ||
    echo "dev: no build of $package yet; the host loads the first one that succeeds" >&2

export RUST_LOG="${RUST_LOG:-info,guest=debug}"
set -m
# Each in a process group of its own: a Ctrl-C reaches them only through `stop`, so the host's
# last words still print.
tail -n +1 -f "$log" &
tailer=$!
"$host_bin" --plugins "$plugins" "$@" </dev/null >>"$log" 2>&1 &
host=$!
set +m
echo "dev: odeon-host (pid $host) serves $plugins; watching $dir/src and $dir/Cargo.toml; Ctrl-C stops"

while :; do
    sleep 0.3
    if ! kill -0 "$host" 2>/dev/null; then
        status=0
        wait "$host" || status=$?
        host=""
        fail "odeon-host exited with status $status (its output is above)"
    fi
    now="$(fingerprint)"
    [ "$now" != "$seen" ] || continue
    # An editor saving several files: let it finish before building.
    sleep 0.2
    seen="$(fingerprint)"
    build_and_install
done
