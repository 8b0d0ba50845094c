#!/usr/bin/env bash
# Installs what terrastream needs to build and test, idempotently (a second run takes seconds):
#   - a Python venv (default ./.venv) with the exact libtorch that tch 0.26 links against
#     (PyPI torch 2.13.0), and duckdb for reading outputs back in tests;
#   - Debian gdal-bin + python3-gdal (gdalinfo, the COG validator).
# The workspace then builds with plain `cargo build`: .cargo/config.toml points LIBTORCH at
# .venv/libtorch, a link this script creates.
#
# Environment:
#   TERRASTREAM_VENV=DIR    put the venv in DIR and link ./.venv to it (CI keeps it in a cache)
#   TERRASTREAM_TORCH=cpu   (default) torch without its CUDA wheels: 0.5 GB, links and runs on CPU
#   TERRASTREAM_TORCH=cuda  the full CUDA wheel set (2.7 GB), for GPU machines
#   TERRASTREAM_SKIP_APT=1  do not install Debian packages (you installed GDAL yourself)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

torch_version=2.13.0
# The CUDA runtime libraries libtorch_cpu.so is linked against; nothing else of CUDA is needed
# to link and run on a CPU.
cpu_extras=(nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)
flavour=${TERRASTREAM_TORCH:-cpu}
venv=${TERRASTREAM_VENV:-$root/.venv}
python=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
if [ "${TERRASTREAM_SKIP_APT:-0}" != 1 ]; then
  if ! dpkg -s gdal-bin python3-gdal >/dev/null 2>&1; then
    log "installing Debian packages gdal-bin python3-gdal"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
      gdal-bin python3-gdal >/dev/null
  fi
fi

# --- Python venv with libtorch and duckdb -----------------------------------------------------
if [ "$venv" != "$root/.venv" ]; then
  mkdir -p "$(dirname "$venv")"
  if [ -e "$root/.venv" ] && [ ! -L "$root/.venv" ]; then
    log "error: $root/.venv exists and is not a link; remove it or unset TERRASTREAM_VENV"
    exit 1
  fi
  ln -sfn "$venv" "$root/.venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv"
  "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"
stamp="$venv/.terrastream-$flavour-$torch_version"
if [ ! -f "$stamp" ]; then
  log "installing torch==$torch_version ($flavour) and duckdb into $venv"
  "$vpy" -m pip install -q --upgrade pip
  if [ "$flavour" = cuda ]; then
    "$vpy" -m pip install -q "torch==$torch_version"
  else
    "$vpy" -m pip install -q --no-deps "torch==$torch_version" "${cpu_extras[@]}"
  fi
  rm -f "$venv"/.terrastream-*
  touch "$stamp"
fi
# The Python packages the tests use to read our outputs back. Checked by import on every run, not
# by the torch stamp, so that a cached venv picks up a package added to this list later.
py_packages=(duckdb numpy jsonschema)
if ! "$vpy" -c "import $(IFS=,; echo "${py_packages[*]}")" 2>/dev/null; then
  log "installing ${py_packages[*]} into $venv"
  "$vpy" -m pip install -q "${py_packages[@]}"
fi
site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The STAC 1.0.0 core and GeoJSON JSON schemas, for validating our STAC items offline in the
# tests: pystac 1.10 bundles them (pystac/validation/jsonschemas); later releases dropped them.
if [ ! -d "$site/pystac/validation/jsonschemas/stac-spec/v1.0.0" ]; then
  log "installing pystac==1.10.1 (STAC JSON schemas) into $venv"
  "$vpy" -m pip install -q --no-deps "pystac==1.10.1"
fi
ln -sfn "$site/torch" "$venv/libtorch"
log "ready: LIBTORCH=$venv/libtorch ($flavour), gdal $(gdalinfo --version 2>/dev/null | cut -d, -f1 || echo missing)"
