"""Reference side of `decode.rs`: a full-size terratorch 1.2.11 v1 tokenizer
(`terramind_v1_tokenizer_<m>`, random weights, pretrained=False) decoding random 14 x 14 ids of a
224 x 224 chip under torch.no_grad() on the CPU: LULC to a class map
(`decode_tokens(ids).argmax(1)`), the image modalities to an image by their diffusion decoder in
`--steps` DDIM steps (`decode_tokens(ids, timesteps=steps)`).

`--precision highest` (default) computes in float32. Importing terratorch sets
`torch.set_float32_matmul_precision("medium")` for the whole process, which on CPUs with AMX or
AVX512-BF16 lets oneDNN run float32 matmuls and convolutions in bfloat16; `--precision medium`
keeps that setting, to measure the reference as it runs by default.

Prints one line `reference decode ... s_per_chip=..`. With `--serve` it prints `ready`, then
times one decode per line read on stdin and prints its seconds, so that `decode.rs` can
interleave our runs and the reference's on a busy machine.
"""

import argparse
import logging
import sys
import time
import warnings

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--modality", default="LULC", choices=["LULC", "S2L2A", "S1GRD", "S1RTC", "DEM", "NDVI"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", default="highest", choices=["highest", "high", "medium"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(a.threads)
    from terratorch.models.backbones.terramind.tokenizer import tokenizer_register as reg

    torch.set_float32_matmul_precision(a.precision)
    model = getattr(reg, f"terramind_v1_tokenizer_{a.modality.lower()}")(pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.quantize.codebook_size, (a.batch, 14, 14), generator=g)

    def once():
        t = time.perf_counter()
        if a.modality == "LULC":
            out = model.decode_tokens(ids).argmax(1).to(torch.uint8)
        else:
            out = model.decode_tokens(ids, timesteps=a.steps, generator=torch.Generator().manual_seed(0), verbose=False)
        s = time.perf_counter() - t
        assert out.shape[-2:] == (224, 224)
        return s

    if a.serve:
        with torch.no_grad():
            print("ready", flush=True)
            for _ in sys.stdin:
                print(f"{once():.6f}", flush=True)
        return
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.reps):
            s = once()
            if i >= a.warmup:
                times.append(s)
    times.sort()
    print(f"reference decode {a.modality} steps={a.steps} batch={a.batch} threads={a.threads} reps={a.reps} "
          f"precision={a.precision} s_per_chip={times[len(times) // 2] / a.batch:.4f}")


if __name__ == "__main__":
    main()
