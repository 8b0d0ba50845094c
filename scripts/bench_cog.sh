#!/usr/bin/env bash
# COG reading benchmarks (manual, not run by CI or any test; no timing or memory is asserted):
#   1. decode throughput, ours vs GDAL on the same windows in the same command
#      (ingest/benches/cog_decode.rs: MB/s of decoded pixels at 1 and 2 threads, ratio ours/GDAL,
#      goal >= 1.0);
#   2. peak RSS of the whole-scene chip pass over 1..64 copies of the sample scene, one process
#      per count (ingest/benches/flat_memory.rs: ratio peak(N)/peak(1), goal flat).
# Needs the sample data (../shared/data) and GDAL's Python bindings at /usr/bin/python3.
# Environment: ROUNDS (15), WINDOW (512), THREADS (1,2), SCENES (1,4,16,64).
# On a shared machine, read the paired ratio rather than the MB/s columns.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo bench -q -p terrastream-ingest --bench cog_decode -- \
  --rounds "${ROUNDS:-15}" --window "${WINDOW:-512}" --threads "${THREADS:-1,2}"
cargo bench -q -p terrastream-ingest --bench flat_memory -- --scenes "${SCENES:-1,4,16,64}"
