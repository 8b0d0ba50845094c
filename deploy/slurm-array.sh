#!/usr/bin/env bash
# A terrastream mapping run as a Slurm job array: task i of N maps the work units of shard i/N
# (terrastream reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT).
#
#   sbatch --array=0-15 deploy/slurm-array.sh run.toml /scratch/$USER/runs/europe-2024
#
# Resubmitting the same command after failures or a time limit maps only the units that are
# not done: the run manifest in the output directory (or s3:// prefix) keeps each unit's state.
# The array range must start at 0 or SLURM_ARRAY_TASK_MIN must be the first index: both work.
#SBATCH --job-name=terrastream-map
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=terrastream-%A_%a.log
# For GPU partitions (set model.device = "cuda" in the config):
# #SBATCH --gres=gpu:1
set -euo pipefail
config=${1:?usage: sbatch --array=0-(N-1) deploy/slurm-array.sh RUN.toml OUTPUT}
out=${2:?usage: sbatch --array=0-(N-1) deploy/slurm-array.sh RUN.toml OUTPUT}
export RUST_LOG=${RUST_LOG:-info}
export TERRASTREAM_LOG_FORMAT=${TERRASTREAM_LOG_FORMAT:-json}
# Exit code 1 when a unit failed: Slurm marks the task failed, and a resubmission retries it.
exec terrastream map "$config" --out "$out" --json
