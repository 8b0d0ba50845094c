#!/usr/bin/env bash
# Throughput and peak memory of our TerraMind (tch) against the reference PyTorch eager
# implementation (terratorch 1.2.11), on this machine, same thread count, CPU, float32.
# A manual check, NOT called by CI or by any test; no timing is asserted anywhere.
#
# For every variant (tiny, base) x modalities (S2L2A; S2L2A+S1GRD) x batch (1, 8) it runs, each
# in its own process so the peak RSS is that configuration's:
#   ours:      model/benches/throughput.rs (cargo bench profile, i.e. release), tch::set_num_threads(N)
#   reference: scripts/bench_model_reference.py in the reference venv, torch.set_num_threads(N)
# Both time the per-chip embedding (encoder, mean over modalities and tokens) on random weights
# and 224x224 random inputs: WARMUP untimed passes, then REPS timed ones; the median is kept.
# With ROUNDS > 1 the pair is run again (alternating ours/reference): the table shows the median
# of the rounds' images/s and, as the ratio, the median of the per-round (paired) ratios, which
# is more robust when other work on the machine comes and goes. Prints a table: images/s of
# each, the ratio ours/reference (goal >= 1.0) and the peak RSS (VmHWM) of each process. On a
# shared machine use ROUNDS >= 3 and read the per-round lines on stderr too.
#
# Needs the reference venv (TERRASTREAM_REF_VENV, default ../ref-venv next to the workspace),
# which scripts/parity_reference.sh creates (terratorch==1.2.11 safetensors, about 7 GB).
# Run time on 2 cores with the defaults: about 7 minutes (base at batch 8 dominates;
# each reference process also spends ~30 s importing terratorch).
#
# Both sides compute in float32: the reference script undoes the bfloat16 matmuls that importing
# terratorch switches on (see its --precision); REF_PRECISION=medium measures the reference with
# terratorch's own setting instead.
#
# Environment: THREADS (default: nproc), ROUNDS (1), WARMUP (1), REPS_TINY (5), REPS_BASE (3),
#              VARIANTS ("tiny base"), BATCHES ("1 8"), MODALITY_SETS ("S2L2A S2L2A,S1GRD"),
#              REF_PRECISION (highest), CARGO_TARGET_DIR (target/ of the workspace).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ref_venv=${TERRASTREAM_REF_VENV:-$(cd "$root/.." && pwd)/ref-venv}
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-1}
warmup=${WARMUP:-1}
variants=${VARIANTS:-tiny base}
batches=${BATCHES:-1 8}
modality_sets=${MODALITY_SETS:-S2L2A S2L2A,S1GRD}
ref_precision=${REF_PRECISION:-highest}
target_dir=${CARGO_TARGET_DIR:-$root/target}
log() { printf '[bench] %s\n' "$*" >&2; }

if ! "$ref_venv/bin/python" -c "import terratorch" 2>/dev/null; then
  log "no reference venv at $ref_venv: run scripts/parity_reference.sh first (or set TERRASTREAM_REF_VENV)"
  exit 1
fi
log "building the throughput bench (release)"
(cd "$root" && cargo bench -q -p terrastream-model --bench throughput --no-run)
# The bench executable: the newest target/release/deps/throughput-* binary.
bench=$(ls -t "$target_dir"/release/deps/throughput-* | grep -v '\.d$' | head -1)
[ -x "$bench" ] || { log "bench binary not found"; exit 1; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
maximum() { sort -g | tail -1; }

rows=()
for variant in $variants; do
  reps=${REPS_TINY:-5}
  [ "$variant" = tiny ] || reps=${REPS_BASE:-3}
  for mods in $modality_sets; do
    for batch in $batches; do
      args=(--variant "$variant" --modalities "$mods" --batch "$batch" --threads "$threads" --warmup "$warmup" --reps "$reps")
      ours_ips=(); ref_ips=(); ours_rss=(); ref_rss=(); ratios=()
      for ((r = 1; r <= rounds; r++)); do
        log "$variant $mods batch $batch round $r/$rounds: ours"
        o=$("$bench" "${args[@]}")
        log "  $o"
        log "$variant $mods batch $batch round $r/$rounds: reference"
        p=$("$ref_venv/bin/python" "$root/scripts/bench_model_reference.py" "${args[@]}" --precision "$ref_precision" 2>/dev/null)
        log "  $p"
        ours_ips+=("$(field images_per_s <<<"$o")"); ours_rss+=("$(field max_rss_mb <<<"$o")")
        ref_ips+=("$(field images_per_s <<<"$p")"); ref_rss+=("$(field max_rss_mb <<<"$p")")
        ratios+=("$(awk -v a="${ours_ips[-1]}" -v b="${ref_ips[-1]}" 'BEGIN {print a / b}')")
      done
      oi=$(printf '%s\n' "${ours_ips[@]}" | median); ri=$(printf '%s\n' "${ref_ips[@]}" | median)
      ratio=$(printf '%s\n' "${ratios[@]}" | median)
      om=$(printf '%s\n' "${ours_rss[@]}" | maximum); rm=$(printf '%s\n' "${ref_rss[@]}" | maximum)
      rows+=("$(awk -v v="$variant" -v m="$mods" -v b="$batch" -v oi="$oi" -v ri="$ri" -v q="$ratio" -v om="$om" -v rm="$rm" \
        'BEGIN {printf "%-6s %-12s %5s %12.3f %12.3f %8.2f %12s %12s", v, m, b, oi, ri, q, om, rm}')")
    done
  done
done

echo
echo "TerraMind CPU float32 forward (embedding), $threads threads, median of $rounds round(s); ratio = median over rounds of ours / reference images/s"
printf '%-6s %-12s %5s %12s %12s %8s %12s %12s\n' variant modalities batch "ours img/s" "ref img/s" ratio "ours RSS MB" "ref RSS MB"
printf '%s\n' "${rows[@]}"
