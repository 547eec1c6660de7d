#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ briefly (FUZZ_SECONDS each, default 25): a smoke
# test that the parsers still never panic and keep the properties the targets assert.
# Each run starts from the committed seeds (fuzz/corpus/<target>/seed-*) and grows its
# corpus in a temporary directory, so the checkout stays clean. Used by .ci/run after the
# tests; developers can run it alone. Long runs: see README ("Fuzzing").
#
# Under CI=true a missing tool or a failed build fails; otherwise they skip with a note.
# A crash fails either way; libFuzzer leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-25}"

in_ci() { [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; }
skip_or_fail() {
  if in_ci; then
    echo "fuzz: $1 (required under CI=true)" >&2
    exit 1
  fi
  echo "fuzz: skipped: $1" >&2
  exit 0
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked --quiet || skip_or_fail "cannot install cargo-fuzz"
fi
# libfuzzer-sys compiles libFuzzer (C++); .ci/deps.sh installs g++.
command -v c++ >/dev/null 2>&1 || skip_or_fail "no C++ compiler (c++) to build libFuzzer"

# cargo fuzz's default build passes -Zsanitizer, which stable rustc only takes with
# RUSTC_BOOTSTRAP=1 (README); set it here too so the script matches the documented commands.
export RUSTC_BOOTSTRAP=1
# A dev build (debug assertions and overflow checks on, no AddressSanitizer: the parsers
# are safe Rust) builds in well under half the time of cargo fuzz's default release+ASan
# build and still runs thousands of inputs a second, plenty for short runs.
build=(--dev --sanitizer none)

cd fuzz
cargo fuzz build "${build[@]}" || skip_or_fail "cargo fuzz build failed"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$work/corpus/$target"
  log="$work/$target.log"
  if cargo fuzz run "${build[@]}" "$target" "$work/corpus/$target" "corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=512 >"$log" 2>&1; then
    # "Done 123456 runs in 26 second(s)"
    echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
  else
    # The panic message, then libFuzzer's report (input, artifact, how to reproduce).
    grep -m1 -A1 'panicked at' "$log" >&2 || true
    if grep -q 'ERROR: libFuzzer' "$log"; then
      sed -n '/ERROR: libFuzzer/,$p' "$log" >&2
    else
      tail -n 60 "$log" >&2
    fi
    echo "fuzz $target: FAILED; the input is in fuzz/artifacts/$target/ (see above to reproduce)" >&2
    exit 1
  fi
done
