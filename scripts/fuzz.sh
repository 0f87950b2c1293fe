#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders a client or a guest can reach (fuzz/fuzz_targets), with
# libFuzzer on the stable toolchain: the sanitizer-coverage instrumentation cargo-fuzz would add,
# as stable -C flags (no AddressSanitizer, which needs nightly; the targets are safe Rust).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]     (`just fuzz`; default 60 s each, every target)
#
# Corpora and logs go to $CARGO_TARGET_DIR/fuzz-runs/<target>/; a crash stops that target and its
# input is written there as crash-*.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_frame msgpackr guest_abi matchmake_body)
target_dir="${CARGO_TARGET_DIR:-$PWD/../target}/fuzz"
triple="$(rustc -vV | sed -n 's/^host: //p')"

# Instrument only the targets' own code (the explicit --target keeps build scripts plain).
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --target "$triple" --target-dir "$target_dir" --quiet

status=0
for t in "${targets[@]}"; do
    out="$target_dir/../fuzz-runs/$t"
    mkdir -p "$out/corpus"
    if "$target_dir/$triple/release/$t" "$out/corpus" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$out/" >"$out/log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: //p' "$out/log")
        echo "$t: $runs inputs in $secs s, no crash"
    else
        echo "$t: CRASH (see $out/log and $out/crash-*)" >&2
        status=1
    fi
done
exit $status
