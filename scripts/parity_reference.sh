#!/usr/bin/env bash
# Parity of our TerraMind (tch) with the reference implementation (terratorch 1.2.11) at any
# size, run locally: a manual check, NOT called by CI or by any test.
#
# What it does:
#   1. Creates a separate Python venv for the reference, OUTSIDE the repository (default
#      ../ref-venv next to the workspace, i.e. /work/ref-venv; override with
#      TERRASTREAM_REF_VENV=DIR), and installs `terratorch==1.2.11 safetensors` there. That
#      pulls a full PyPI torch with its CUDA wheels (about 7 GB on disk, several minutes once).
#      Never commit it; the workspace's own .venv is not touched.
#   2. Runs ../shared/fixtures/terramind/make_fixtures.py with that venv: builds the reference
#      TerraMind with random (seeded) weights, writes weights.safetensors, inputs.safetensors,
#      outputs.safetensors and meta.json into OUT (skipped when OUT already holds them; pass
#      --regen to redo it). For base, batch 1, layers 0,11 on 2 cores: about 5 min and 8.6 GB
#      peak RSS (the script runs several reference models and checks); the weights file is
#      0.85 GB.
#   3. Builds `terrastream` (cargo build -p terrastream; skipped when TERRASTREAM_BIN names a
#      built binary) and runs
#      `terrastream model embed --checkpoint OUT/weights.safetensors --input OUT/inputs.safetensors
#      --tim T --temperature 0 --device cpu` on the same inputs (base: about 15 s, 2.6 GB).
#   4. Prints, per reference tensor, the max |ours - reference| (floats) or the number of
#      differing entries (ids), the README's tolerance (1e-4 on floats, equal TiM ids), and for
#      top-5 logit ids that differ, the reference gap between the swapped ranks (near-ties,
#      which the reference itself reorders between thread counts). Exit status 0 when every
#      float is within 1e-4 and tim_*_ids are identical.
#
# Usage:
#   scripts/parity_reference.sh [--variant base] [--modalities S2L2A,S1GRD] [--tim LULC]
#       [--size 224] [--batch 1] [--layers 0,11] [--seed 0] [--out DIR] [--regen]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
variant=base
modalities=S2L2A,S1GRD
tim=LULC
size=224
batch=1
layers=0,11
seed=0
out=
regen=0
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) variant=$2; shift 2 ;;
    --modalities) modalities=$2; shift 2 ;;
    --tim) tim=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --regen) regen=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
out=${out:-/tmp/terrastream-parity-$variant}
ref_venv=${TERRASTREAM_REF_VENV:-$(cd "$root/.." && pwd)/ref-venv}
fixtures="$root/../shared/fixtures/terramind/make_fixtures.py"
log() { printf '[parity] %s\n' "$*" >&2; }

case "$ref_venv" in
  "$root"/*) log "error: the reference venv must be outside the repository ($ref_venv)"; exit 2 ;;
esac
if [ ! -x "$ref_venv/bin/python" ]; then
  log "creating the reference venv $ref_venv"
  python3 -m venv "$ref_venv"
fi
if ! "$ref_venv/bin/python" -c "import terratorch, safetensors" 2>/dev/null; then
  log "installing terratorch==1.2.11 safetensors into $ref_venv (large: torch with CUDA wheels)"
  "$ref_venv/bin/pip" install -q terratorch==1.2.11 safetensors
fi
py="$ref_venv/bin/python"

if [ "$regen" = 1 ] || [ ! -f "$out/outputs.safetensors" ]; then
  log "reference: $variant, $modalities, TiM $tim, ${size}px, batch $batch, layers $layers -> $out"
  tim_args=()
  [ -n "$tim" ] && tim_args=(--tim "$tim")
  start=$(date +%s)
  # Through reference_float32.py: importing terratorch would switch float32 matmuls to bfloat16.
  "$py" "$root/scripts/reference_float32.py" "$fixtures" --variant "$variant" --seed "$seed" --modalities "$modalities" --size "$size" \
    --batch "$batch" "${tim_args[@]}" --layers "$layers" --out "$out" > "$out.log" 2>&1 \
    || { log "make_fixtures.py failed, see $out.log"; exit 1; }
  log "reference done in $(( $(date +%s) - start )) s"
else
  log "reusing the reference outputs in $out (--regen to redo)"
fi

# TERRASTREAM_BIN names an already built binary (e.g. the one `cargo test --workspace` built);
# otherwise it is built here, into CARGO_TARGET_DIR when that is set, as cargo does.
if [ -n "${TERRASTREAM_BIN:-}" ]; then
  bin=$TERRASTREAM_BIN
else
  log "building terrastream"
  (cd "$root" && cargo build -q -p terrastream)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/terrastream"
fi
ours="$out/ours.safetensors"
tim_args=()
[ -n "$tim" ] && tim_args=(--tim "$tim" --temperature 0)
start=$(date +%s)
"$bin" model embed --variant "$variant" --checkpoint "$out/weights.safetensors" \
  --input "$out/inputs.safetensors" --output "$ours" "${tim_args[@]}" --device cpu \
  --modalities "$modalities" > /dev/null
log "ours done in $(( $(date +%s) - start )) s"

"$py" - "$out/outputs.safetensors" "$ours" "$variant" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import load_file

ref, ours, variant = load_file(sys.argv[1]), load_file(sys.argv[2]), sys.argv[3]
ATOL = 1e-4
ok = True
print(f"parity {variant}: ours (tch) vs reference (terratorch 1.2.11), float32 CPU")
print(f"{'tensor':28} {'shape':>16} {'max |diff|':>12}  {'mismatches':>10}  ok")
for key in sorted(ref, key=lambda k: (k.startswith("tim"), k)):
    r = ref[key]
    o = ours.get(key)
    if o is None or o.shape != r.shape:
        print(f"{key:28} {str(r.shape):>16} missing or shape {None if o is None else o.shape}")
        ok = False
        continue
    if r.dtype.kind == "f":
        d = float(np.abs(o.astype(np.float64) - r.astype(np.float64)).max())
        good = d <= ATOL
        print(f"{key:28} {str(r.shape):>16} {d:12.3e}  {'':>10}  {'yes' if good else 'NO'}")
    else:
        n = int((o != r).sum())
        # top-5 ids may swap near-tied ranks 2..5; only the argmax ids must be equal.
        good = n == 0 or key.endswith("logits_top5_ids")
        print(f"{key:28} {str(r.shape):>16} {'':>12}  {n:10d}  {'yes' if good else 'NO'}")
        if n and key.endswith("logits_top5_ids"):
            vals = ref[key.replace("_ids", "")]
            for b, p, k in zip(*np.nonzero(o != r)):
                lo, hi = max(k - 1, 0), min(k + 1, r.shape[-1] - 1)
                gap = min(abs(vals[b, p, k] - vals[b, p, j]) for j in (lo, hi) if j != k)
                print(f"    item {b} position {p} rank {k}: ours {o[b, p, k]}, reference {r[b, p, k]}, "
                      f"reference gap to the neighbouring rank {gap:.2e}")
    ok &= good
print("PASS: every float within 1e-4, TiM ids identical" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
