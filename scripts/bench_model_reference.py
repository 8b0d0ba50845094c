#!/usr/bin/env python3
"""Forward-pass throughput of the reference TerraMind (terratorch 1.2.11, PyTorch eager, CPU,
float32): the same work as our `model/benches/throughput.rs` -- the backbone with
merge_method='mean' (encoder, normed last layer, mean over modalities), then the mean over the
tokens -- on random weights (pretrained=False) and random standardized inputs, under
torch.no_grad(). One configuration per process, so the reported peak RSS is that
configuration's.

Run with the reference venv (see scripts/parity_reference.sh), normally via scripts/bench_model.sh:

    /work/ref-venv/bin/python scripts/bench_model_reference.py --variant tiny \
        --modalities S2L2A,S1GRD --batch 8 --threads 2 --warmup 1 --reps 5

`--precision highest` (default) keeps float32 matmuls in float32. Importing terratorch calls
`torch.set_float32_matmul_precision("medium")` for the whole process (its Clay backbone module
does, at import time); on CPUs with AMX or AVX512-BF16 oneDNN then runs the float32 matmuls in
bfloat16, which is faster and less exact than what we compute. `--precision medium` measures the
reference with terratorch's own setting.

Prints one line `reference variant=.. modalities=.. batch=.. threads=.. precision=.. median_s=..
images_per_s=.. max_rss_mb=..`.
"""

import argparse
import logging
import time
import warnings

import torch

CHANNELS = {"S2L2A": 12, "S2L1C": 13, "RGB": 3, "S1GRD": 2, "S1RTC": 2, "DEM": 1}


def max_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM), as the Rust bench reads it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="tiny")
    p.add_argument("--modalities", default="S2L2A")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--precision", default="highest", choices=["highest", "high", "medium"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    logging.disable(logging.WARNING)
    from terratorch.registry import BACKBONE_REGISTRY

    torch.set_float32_matmul_precision(a.precision)

    modalities = a.modalities.split(",")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BACKBONE_REGISTRY.build(f"terramind_v1_{a.variant}", pretrained=False,
                                        modalities=modalities, merge_method="mean").eval()
    inputs = {m: torch.randn(a.batch, CHANNELS[m], a.size, a.size) for m in modalities}

    def forward():
        with torch.no_grad():
            return model(dict(inputs))[-1].mean(dim=1)

    for _ in range(a.warmup):
        forward()
    times = []
    for _ in range(max(a.reps, 1)):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    print(f"reference variant={a.variant} modalities={a.modalities} batch={a.batch} threads={a.threads} "
          f"precision={a.precision} median_s={median:.4f} images_per_s={a.batch / median:.3f} max_rss_mb={max_rss_mb():.0f}")


if __name__ == "__main__":
    main()
