#!/usr/bin/env python3
"""Runs a reference script (terratorch) with float32 matmuls kept in float32.

Importing terratorch calls `torch.set_float32_matmul_precision("medium")` for the whole process
(its Clay backbone module does, at import time). On CPUs with AMX or AVX512-BF16, oneDNN then
runs float32 matmuls and convolutions in bfloat16: the reference's outputs change by up to 1e-2
between thread counts and TiM ids flip. This wrapper imports that module first, restores
"highest", then runs the script as `__main__` with the remaining arguments.

    /work/ref-venv/bin/python scripts/reference_float32.py SCRIPT.py [ARGS...]
"""

import runpy
import sys

import torch
import terratorch.models.backbones.clay_v15.model  # noqa: F401  (sets "medium" on import)

torch.set_float32_matmul_precision("highest")
if len(sys.argv) < 2:
    sys.exit(__doc__)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
