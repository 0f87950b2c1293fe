#!/usr/bin/env bash
# What `just bench` needs besides the Rust toolchain, installed on first use and only checked
# after that: redis-server (the hosts' registry in the proxy workload) and nginx (its baseline
# proxy), both from Debian's packages, as scripts/setup.sh installs redis-server. Neither is
# started here: odeon-bench runs its own instances on free loopback ports, in the foreground.
set -euo pipefail

missing=()
command -v "${ODEON_REDIS_SERVER:-redis-server}" >/dev/null || missing+=(redis-server)
# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)

if [ ${#missing[@]} -gt 0 ]; then
    echo "bench setup: installing ${missing[*]}"
    # Where an init system runs, the package also starts its own nginx service on port 80; the
    # bench never uses it.
    "$(cd "$(dirname "$0")/.." && pwd)/scripts/apt-install.sh" "${missing[@]}"
fi
