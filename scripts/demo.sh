#!/usr/bin/env bash
# Installs everything (idempotent) and runs the demo mapping job on the bundled sample scene.
# Output: out/demo/embeddings/*.parquet (GeoParquet: one row per chip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --locked -p terrastream -- map examples/demo.toml "$@"
