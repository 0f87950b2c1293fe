#!/usr/bin/env bash
# Prints one line per crate under plugins/: its package name (for `cargo -p`) and the name of the
# library it builds, which names its .wasm (the `[lib]` name, or the package name with `-` as `_`).
# The directory name is neither: a room in plugins/my-room may be package `my-room` and build
# `my_room.wasm`. The workspace's `plugins/*` glob makes every one a member.
#
#   scripts/plugin-crates.sh [MANIFEST...]   (those Cargo.toml files instead: absolute, or relative
#                                            to the repository root)
set -euo pipefail
manifests=("$@")
cd "$(dirname "$0")/.."
[ ${#manifests[@]} -gt 0 ] || manifests=(plugins/*/Cargo.toml)

for manifest in "${manifests[@]}"; do
    [ -e "$manifest" ] || continue
    awk '
        /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
        /^[[:space:]]*name[[:space:]]*=/ {
            value = $0
            sub(/^[^=]*=[[:space:]]*"/, "", value)
            sub(/".*/, "", value)
            if (section == "[package]") package = value
            if (section == "[lib]") lib = value
        }
        END {
            if (package == "") { print "no [package] name in " FILENAME > "/dev/stderr"; exit 1 }
            if (lib == "") { lib = package; gsub(/-/, "_", lib) }
            print package, lib
        }
    ' "$manifest"
done
