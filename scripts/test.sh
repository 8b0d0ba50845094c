#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need (idempotent, seconds when done),
# then builds and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
