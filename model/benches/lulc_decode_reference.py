"""Reference side of `lulc_decode.rs`: the full-size terratorch 1.2.11 LULC tokenizer
(`terramind_v1_tokenizer_lulc`, random weights, pretrained=False) decoding random ids to a class
map, `decode_tokens(ids).argmax(1)`, under torch.no_grad() on the CPU in float32.

Prints one line `reference lulc_decode batch=.. threads=.. reps=.. s_per_chip=..`. With `--serve`
it prints `ready`, then times one decode per line read on stdin and prints its seconds, so that
`lulc_decode.rs` can interleave our runs and the reference's on a busy machine.
"""

import argparse
import logging
import sys
import time
import warnings

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(a.threads)
    from terratorch.models.backbones.terramind.tokenizer.tokenizer_register import terramind_v1_tokenizer_lulc

    model = terramind_v1_tokenizer_lulc(pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.quantize.codebook_size, (a.batch, 14, 14), generator=g)
    def once():
        t = time.perf_counter()
        classes = model.decode_tokens(ids).argmax(1).to(torch.uint8)
        s = time.perf_counter() - t
        assert classes.shape == (a.batch, 224, 224)
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
    print(f"reference lulc_decode batch={a.batch} threads={a.threads} reps={a.reps} s_per_chip={times[len(times) // 2] / a.batch:.4f}")


if __name__ == "__main__":
    main()
