#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a fixed budget from its seeds (fuzz/seeds/<target>) and
# prints each target's executions; a finding stops with the input saved under
# fuzz/artifacts/<target>/ (add it to the tests that keep it fixed, e.g.
# ingest/tests/data/fuzz/). Not part of the test command: it needs nightly Rust and cargo-fuzz
# (installed here when missing) and the venv of scripts/setup.sh (the pipelines crate links
# libtorch).
#
#   bash scripts/fuzz.sh [seconds per target, default 300] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-300}"
shift || true
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The pipelines crate links libtorch (the venv's); the fuzz binaries get no rpath for it.
export LD_LIBRARY_PATH="$PWD/.venv/libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd fuzz
# No sanitizer: the parsers are safe Rust, so the bugs to find are panics, aborts (allocation
# failures), hangs and memory blow-ups, which libFuzzer catches itself; it runs several times
# faster without ASan.
cargo +nightly fuzz build -s none
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cp -n "seeds/$t/"* "corpus/$t/" 2>/dev/null || true
  log="corpus/$t.log"
  if cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
      -max_total_time="$budget" -timeout=10 -rss_limit_mb=4096 -max_len=65536 >"$log" 2>&1; then
    echo "$t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1), no finding"
  else
    echo "$t: FINDING, see $log and fuzz/artifacts/$t/"
    exit 1
  fi
done
