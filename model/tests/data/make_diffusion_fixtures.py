"""Parity fixtures for the diffusion decoders of the TerraMind v1 DiVAE tokenizers.

Run with the reference venv (terratorch 1.2.11, no network needed; see scripts/parity_reference.sh
for how it is made):

    /work/ref-venv/bin/python model/tests/data/make_diffusion_fixtures.py

It writes `model/tests/data/diffusion/`:

- `weights_S1GRD.safetensors`: random weights of a reduced U-Net decoder (`decoder.*`, reference
  key names) of the S1GRD tokenizer: model_channels 32, 1 residual block per level, the v1
  levels (1, 2, 2, 2), attention at 4x and 8x, patch 4. Every parameter is random, including
  the ones the reference initialises to zero, so that every path matters.
- `io.safetensors`: token ids `[2, 4, 6]` (a 64 x 96 px chip: non-square), the start noise the
  reference draws from its seeded generator, the U-Net's single prediction at t = 999
  (`unet_t999`), and the decoded images for 10 steps (`image_10`) and 3 steps (`image_3`: 1000
  is not a multiple of 3, so the reference runs 4 timesteps).
- `meta.json`: versions, seeds, the reduced configuration, and the key layout (names and shapes)
  of the full-size decoders of S2L2A, S1GRD, S1RTC, DEM and NDVI, to check our loader builds the
  official key tree.
"""

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import torch

from terratorch.models.backbones.terramind.tokenizer import tokenizer_register as reg
from terratorch.models.backbones.terramind.tokenizer.models.unet import unet

# Importing terratorch sets torch.set_float32_matmul_precision("medium") (its Clay backbone
# module does, at import time). On CPUs with AMX or AVX512-BF16, oneDNN then runs float32
# convolutions and matmuls in bfloat16: the reference's own outputs change by 1e-2 between thread
# counts. Fixtures are float32 references, so full precision is restored.
torch.set_float32_matmul_precision("highest")

OUT = Path(__file__).resolve().parent / "diffusion"
BUILDERS = {
    "S2L2A": reg.terramind_v1_tokenizer_s2l2a,
    "S1GRD": reg.terramind_v1_tokenizer_s1grd,
    "S1RTC": reg.terramind_v1_tokenizer_s1rtc,
    "DEM": reg.terramind_v1_tokenizer_dem,
    "NDVI": reg.terramind_v1_tokenizer_ndvi,
}
REDUCED = dict(model_channels=32, num_res_blocks=1, attention_resolutions=[4, 8], channel_mult=(1, 2, 2, 2))
IDS_SHAPE = (2, 4, 6)


def reduced_unet(**kwargs):
    return unet.PatchedUNetCondCat(patch_size=4, **REDUCED, **kwargs)


def randomize(module, gen):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = math.prod(m.weight.shape[1:])
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
        # Values representable in float16, stored as float16: half the file, same model (the
        # loader widens them to float32 exactly).
        for p in module.parameters():
            p.copy_(p.half().float())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    layout = {}
    for name, build in BUILDERS.items():
        sd = build(pretrained=False).state_dict()
        layout[name] = {k: list(v.shape) for k, v in sd.items() if k.startswith("decoder.")}

    saved = unet.unet_patched
    unet.unet_patched = reduced_unet
    try:
        tok = reg.terramind_v1_tokenizer_s1grd(pretrained=False).eval()
    finally:
        unet.unet_patched = saved
    gen = torch.Generator().manual_seed(args.seed)
    randomize(tok.decoder, gen)

    vocab = int(tok.quantize.codebook_size)
    ids = torch.randint(0, vocab, IDS_SHAPE, generator=gen)
    b, h, w = IDS_SHAPE
    shape = (b, tok.n_channels, h * tok.patch_size, w * tok.patch_size)
    noise_seed = args.seed + 1
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(noise_seed))
    io = {"ids": ids, "noise": noise}
    with torch.no_grad():
        quant = tok.tokens_to_embedding(ids)
        io["unet_t999"] = tok.decoder(noise, torch.tensor(999), quant)
        for steps in (10, 3):
            g = torch.Generator().manual_seed(noise_seed)
            io[f"image_{steps}"] = tok.decode_tokens(ids, timesteps=steps, generator=g, verbose=False)

    OUT.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in io.items()}, OUT / "io.safetensors")
    sd = {k: v.contiguous() for k, v in tok.state_dict().items() if k.startswith("decoder.")}
    save_file({k: v.half() for k, v in sd.items()}, OUT / "weights_S1GRD.safetensors")
    stats = {
        k: {"min": v.min().item(), "max": v.max().item(), "std": v.float().std().item()}
        for k, v in io.items() if k != "ids"
    }
    meta = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "terratorch": __import__("importlib.metadata").metadata.version("terratorch"),
        },
        "seed": args.seed,
        "noise_seed": noise_seed,
        "threads": args.threads,
        "reduced": {**REDUCED, "patch_size": 4, "modality": "S1GRD", "channels": tok.n_channels},
        "decoder_parameters": sum(v.numel() for v in sd.values()),
        "init": {
            "conv_and_linear_weight": "N(0, 1/fan_in), zero-initialised ones included",
            "bias": "N(0, 0.05^2)",
            "groupnorm_weight": "1 + N(0, 0.1^2)",
            "ids": f"uniform over the vocabulary ({vocab})",
        },
        "stats": stats,
        "official_layout": layout,
    }
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("decoder_parameters", "stats")}, indent=1))


if __name__ == "__main__":
    main()
