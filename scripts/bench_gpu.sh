#!/usr/bin/env bash
# Pipeline efficiency on a GPU machine: end-to-end chips/s of `terrastream map` over chips/s of
# the model alone on the same pre-loaded chips, and chips/s, with TerraMind base on CUDA.
#
#   bash scripts/bench_gpu.sh            # VARIANT=base SCENES=10 BATCH=32 ROUNDS=3 by default
#
# Needs an NVIDIA GPU and driver; installs the CUDA torch wheels (TERRASTREAM_TORCH=cuda).
# Prints the same table as the CPU run of pipelines/benches/efficiency.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
TERRASTREAM_TORCH=cuda bash scripts/setup.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
export TERRASTREAM_BENCH_DEVICE=${DEVICE:-cuda}
export TERRASTREAM_BENCH_VARIANT=${VARIANT:-base}
export TERRASTREAM_BENCH_SCENES=${SCENES:-10}
export TERRASTREAM_BENCH_BATCH=${BATCH:-32}
export TERRASTREAM_BENCH_ROUNDS=${ROUNDS:-3}
# Keep libtorch_cuda linked even though no symbol of ours names it (the linker's --as-needed
# would drop it, and CUDA would then look absent at run time). A separate target directory, so
# the CPU build's artifacts stay as they are.
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,--no-as-needed -C link-arg=-ltorch_cuda -C link-arg=-Wl,--as-needed"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/gpu}
cargo bench --locked -p terrastream --bench efficiency
