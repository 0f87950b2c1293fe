#!/usr/bin/env bash
# Everything `just test` needs besides the Rust toolchain and `just`, installed on first use and
# only checked after that (a second run takes well under a second):
#
# - the wasm32-wasip1 target of the toolchain rust-toolchain.toml names (alone with
#   `--wasm-target`, which `just plugins` runs);
# - the npm packages of tests/ and tests/schema/, from their committed lockfiles;
# - redis-server, and the openssl command the proxy's TLS test makes its certificates with, from
#   Debian's packages;
# - SecantusDB's secantusd-py (a MongoDB-wire server; no mongod can be installed here) in a
#   virtualenv at $ODEON_SECANTUS_VENV (default ~/.cache/odeon/secantus-venv): the one place every
#   test and `just cluster` look, and where SECANTUSD_PY points.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain="$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -qx wasm32-wasip1; then
    echo "setup: adding the wasm32-wasip1 target to Rust $toolchain"
    rustup target add wasm32-wasip1 --toolchain "$toolchain"
fi
# `--wasm-target`: only that (what building the plugins needs, for `just run`).
[ "${1:-}" = "--wasm-target" ] && exit 0

for dir in tests tests/schema; do
    # npm ci writes node_modules/.package-lock.json; an older one than the lockfile is stale.
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "setup: npm ci in $dir"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
done

packages=()
command -v "${ODEON_REDIS_SERVER:-redis-server}" >/dev/null || packages+=(redis-server)
command -v openssl >/dev/null || packages+=(openssl)
if [ ${#packages[@]} -gt 0 ]; then
    echo "setup: installing ${packages[*]}"
    scripts/apt-install.sh "${packages[@]}"
fi

venv="${ODEON_SECANTUS_VENV:-$HOME/.cache/odeon/secantus-venv}"
if [ ! -x "$venv/bin/secantusd-py" ]; then
    echo "setup: installing secantusdb 0.7.0b3 in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'secantusdb==0.7.0b3'
fi
