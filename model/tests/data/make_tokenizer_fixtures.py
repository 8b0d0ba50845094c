"""Parity fixtures for the TerraMind v1 FSQ tokenizer encoders and the LULC VQ-VAE decoder.

Run with the reference venv (terratorch 1.2.11, no network needed):

    /work/ref-venv/bin/python model/tests/data/make_tokenizer_fixtures.py            # write
    /work/ref-venv/bin/python model/tests/data/make_tokenizer_fixtures.py --verify   # re-check

It writes `model/tests/data/tokenizers/`:

- `weights_<NAME>.safetensors`: random weights, reference key names (the `state_dict()` of the
  registered tokenizer class), at reduced width/depth. DiVAE tokenizers keep `encoder.*` and
  `quant_proj.*` only (their diffusion decoder is not ported); LULC (a VQ-VAE) keeps everything.
- `io.safetensors`: inputs, FSQ latents (`quant_proj` output) and token ids per modality, and
  the LULC decoder's class maps and logits.
- `meta.json`: versions, seeds, configuration, rounding/argmax margins, and the key layout of the
  full-size (official) tokenizers, used to check our loader builds the official key tree.

The reduced models come from the registered builders themselves (`terramind_v1_tokenizer_*`) with
the ViT presets `vit_b_enc` / `vit_b_dec` swapped for smaller ViTs, so the per-modality settings
(channels, FSQ levels, post-MLP, image size 256) are the registry's.
"""

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import torch

from terratorch.models.backbones.terramind.tokenizer import tokenizer_register as reg
from terratorch.models.backbones.terramind.tokenizer.models import vit_models
from terratorch.models.backbones.terramind.tokenizer.models.unet import unet

OUT = Path(__file__).resolve().parent / "tokenizers"
BUILDERS = {
    "S2L2A": reg.terramind_v1_tokenizer_s2l2a,
    "S1GRD": reg.terramind_v1_tokenizer_s1grd,
    "S1RTC": reg.terramind_v1_tokenizer_s1rtc,
    "DEM": reg.terramind_v1_tokenizer_dem,
    "NDVI": reg.terramind_v1_tokenizer_ndvi,
    "LULC": reg.terramind_v1_tokenizer_lulc,
}
# (batch, height, width) of each input: small chips keep the files small; DEM and LULC use the
# TerraMind chip size 224 (14 x 14 tokens), S1 a non-square chip.
SHAPES = {
    "S2L2A": (2, 64, 64),
    "S1GRD": (2, 64, 96),
    "S1RTC": (2, 96, 64),
    "DEM": (2, 224, 224),
    "NDVI": (2, 64, 64),
    "LULC": (2, 224, 224),
}
LULC_CLASSES = 10


class Reduced:
    """Swaps the ViT presets for reduced ones and the diffusion UNet for a stub."""

    def __init__(self, dim, depth, heads):
        self.kw = dict(dim_tokens=dim, depth=depth, num_heads=heads, mlp_ratio=4, qkv_bias=True)

    def __enter__(self):
        self.saved = (vit_models.vit_b_enc, vit_models.vit_b_dec, unet.unet_patched)
        kw = self.kw
        vit_models.vit_b_enc = lambda in_channels, patch_size, resolution, patch_proj=True, post_mlp=False, **_: (
            vit_models.ViTEncoder(
                in_channels=in_channels,
                patch_size=patch_size,
                resolution=resolution,
                patch_proj=patch_proj,
                post_mlp=post_mlp,
                **kw,
            )
        )
        vit_models.vit_b_dec = lambda out_channels, patch_size, resolution, patch_proj=True, post_mlp=False, out_conv=False, **_: (
            vit_models.ViTDecoder(
                out_channels=out_channels,
                patch_size=patch_size,
                resolution=resolution,
                patch_proj=patch_proj,
                post_mlp=post_mlp,
                out_conv=out_conv,
                **kw,
            )
        )
        unet.unet_patched = lambda **_: torch.nn.Identity()
        return self

    def __exit__(self, *exc):
        vit_models.vit_b_enc, vit_models.vit_b_dec, unet.unet_patched = self.saved


def kept(name, key):
    return name == "LULC" or key.startswith("encoder.") or key.startswith("quant_proj.")


def randomize(model, name, gen, inputs):
    """Weights that make every path matter: see the README table in meta.json['init']."""
    with torch.no_grad():
        for key, t in model.state_dict(keep_vars=True).items():
            if not kept(name, key):
                continue
            leaf = key.rsplit(".", 1)[-1]
            if key.endswith("pos_emb"):
                # The checkpoint stores the sin-cos table; noise proves the stored one is used.
                t.add_(0.02 * torch.randn(t.shape, generator=gen))
            elif "norm" in key and leaf == "weight":
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=gen))
            elif leaf == "bias":
                t.copy_(0.05 * torch.randn(t.shape, generator=gen))
            else:
                fan_in = math.prod(t.shape[1:])
                t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(fan_in))
        # Rescale quant_proj so the latents spread over the FSQ levels instead of saturating the
        # sigmoid (std ~1.5 at the latents).
        h = model.encoder(model.prepare_input(inputs))
        lat = model.quant_proj(h)
        scale = 1.5 / lat.std().item()
        model.quant_proj.weight.mul_(scale)
        model.quant_proj.bias.mul_(scale)
        return scale


def make_input(name, gen):
    b, h, w = SHAPES[name]
    if name == "LULC":
        # Blocky class maps (8-pixel cells) so patches hold several classes but not noise.
        cells = torch.randint(0, LULC_CLASSES, (b, h // 8, w // 8), generator=gen)
        return cells.repeat_interleave(8, 1).repeat_interleave(8, 2).to(torch.uint8)
    c = {"S2L2A": 12, "S1GRD": 2, "S1RTC": 2, "DEM": 1, "NDVI": 1}[name]
    return torch.randn((b, c, h, w), generator=gen)


def fsq_margin(model, lat):
    """Smallest distance of sigmoid(latent)·(L-1) to a rounding boundary (k + 0.5)."""
    d = (model.quantize._levels - 1).view(1, -1, 1, 1)
    v = torch.sigmoid(lat) * d
    return (v - v.floor() - 0.5).abs().min().item()


def top2_gap(logits):
    top = logits.topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]).min().item()


def run(models, io_in, gen_ids):
    out = {}
    with torch.no_grad():
        for name, model in models.items():
            x = io_in[name]
            x_in = x.long() if name == "LULC" else x
            h = model.encoder(model.prepare_input(x_in))
            lat = model.quant_proj(h)
            _, _, ids = model.quantize(lat)
            assert torch.equal(ids, model.tokenize(x_in)), name
            out[f"{name}.latents"] = lat.contiguous()
            out[f"{name}.ids"] = ids.contiguous()
        lulc = models["LULC"]
        for tag, ids in gen_ids.items():
            logits = lulc.decode_tokens(ids.long())
            out[f"LULC.{tag}.map"] = logits.argmax(1).to(torch.uint8).contiguous()
            if tag == "small":
                out[f"LULC.{tag}.logits"] = logits.contiguous()
            out[f"_gap.{tag}"] = torch.tensor(top2_gap(logits))
    return out


def official_layout():
    """Keys and shapes of the full-size tokenizers that our loader must read."""
    layout = {}
    for name, build in BUILDERS.items():
        sd = build(pretrained=False).state_dict()
        layout[name] = {
            "total_keys": len(sd),
            "keys": {k: list(v.shape) for k, v in sd.items() if kept(name, k)},
        }
    return layout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verify", action="store_true", help="recompute from the stored files and compare")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from safetensors.torch import load_file, save_file

    with Reduced(args.dim, args.depth, args.heads):
        models = {name: build(pretrained=False).eval() for name, build in BUILDERS.items()}

    if args.verify:
        io = load_file(OUT / "io.safetensors")
        for name, model in models.items():
            missing, unexpected = model.load_state_dict(load_file(OUT / f"weights_{name}.safetensors"), strict=False)
            assert not unexpected and all(not kept(name, k) for k in missing), (name, missing, unexpected)
        io_in = {n: io[f"{n}.input"] for n in BUILDERS}
        gen_ids = {t: io[f"LULC.{t}.ids"] for t in ("random", "small")}
        out = run(models, io_in, gen_ids)
        bad = [k for k, v in out.items() if not k.startswith("_") and not torch.equal(v, io[k])]
        print("verify:", "OK" if not bad else f"differs: {bad}")
        sys.exit(1 if bad else 0)

    gen = torch.Generator().manual_seed(args.seed)
    io_in = {name: make_input(name, gen) for name in BUILDERS}
    scales = {}
    for name, model in models.items():
        x = io_in[name].long() if name == "LULC" else io_in[name]
        scales[name] = randomize(model, name, gen, x)
    vocab = int(models["LULC"].quantize.codebook_size)
    gen_ids = {
        # What TiM hands the decoder: ids over the whole LULC vocabulary on the 14 x 14 grid.
        "random": torch.randint(0, vocab, (2, 14, 14), generator=gen),
        "small": torch.randint(0, vocab, (2, 4, 4), generator=gen),
    }
    out = run(models, io_in, gen_ids)

    OUT.mkdir(exist_ok=True)
    io = {f"{n}.input": t.contiguous() for n, t in io_in.items()}
    io.update({f"LULC.{t}.ids": ids for t, ids in gen_ids.items()})
    io.update({k: v for k, v in out.items() if not k.startswith("_")})
    save_file(io, OUT / "io.safetensors")
    for name, model in models.items():
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if kept(name, k)}
        save_file(sd, OUT / f"weights_{name}.safetensors")

    margins, stats = {}, {}
    for name, model in models.items():
        lat, ids = out[f"{name}.latents"], out[f"{name}.ids"]
        margins[name] = fsq_margin(model, lat)
        stats[name] = {
            "ids_shape": list(ids.shape),
            "distinct_ids": int(ids.unique().numel()),
            "levels": model.quantize._levels.tolist(),
            "quant_proj_scale": scales[name],
        }
    meta = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "terratorch": __import__("importlib.metadata").metadata.version("terratorch"),
        },
        "seed": args.seed,
        "threads": args.threads,
        "reduced": {"dim": args.dim, "depth": args.depth, "heads": args.heads, "mlp_ratio": 4, "image_size": 256},
        "input_shapes": {n: list(t.shape) for n, t in io_in.items()},
        "init": {
            "linear_and_conv_weight": "N(0, 1/fan_in)",
            "bias (incl. LayerNorm)": "N(0, 0.05^2)",
            "layernorm_weight": "1 + N(0, 0.1^2)",
            "pos_emb": "the registry's sin-cos table + N(0, 0.02^2)",
            "quant_proj": "then scaled so the latents have std 1.5",
            "inputs": "image modalities N(0, 1); LULC class ids 0..9 in 8x8-pixel cells (uint8)",
            "decoder ids": "uniform over the LULC vocabulary (7*5*5*5*5 = 4375)",
        },
        "fsq_min_rounding_margin": margins,
        "lulc_min_top2_logit_gap": {t: out[f"_gap.{t}"].item() for t in gen_ids},
        "stats": stats,
        "official_layout": official_layout(),
    }
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("fsq_min_rounding_margin", "lulc_min_top2_logit_gap", "stats")}, indent=1))


if __name__ == "__main__":
    main()
