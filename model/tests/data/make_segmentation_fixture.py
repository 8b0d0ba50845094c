"""Parity fixture for the fine-tuned segmentation decoder: terratorch's `FCNDecoder` and
`SegmentationHead` with random weights, on random merged encoder tokens.

Run with the reference venv (terratorch 1.2.11, no network needed):

    /work/ref-venv/bin/python model/tests/data/make_segmentation_fixture.py            # write
    /work/ref-venv/bin/python model/tests/data/make_segmentation_fixture.py --verify   # re-check

It writes `model/tests/data/segmentation/`:

- `model_<case>.pt`: `torch.save` of a Lightning-style checkpoint, `{"state_dict": {"model.decoder.*",
  "model.head.*"}, "epoch": 3}`, the layout of a terratorch `SemanticSegmentationTask`
  checkpoint without its encoder (the encoder's loading is covered by the TerraMind fixtures).
- `io.safetensors`: `tokens` `[B, h*w, D]` (the merged last encoder layer), `logits`
  `[B, classes, H, W]` as `PixelWiseModel` computes them: reshape to an image, decoder, head,
  bilinear resize to the input size when it differs.
- `meta.json`: versions and sizes.

Two cases are stored, so both the plain head and one with a `channel_list` are checked: case
`a` (4 blocks: x16, input 224 -> no resize) and case `b` (3 blocks with head convs: x8, input
224 -> resized from 112).
"""

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from terratorch.models.decoders.fcn_decoder import FCNDecoder
from terratorch.models.heads.segmentation_head import SegmentationHead

OUT = Path(__file__).resolve().parent / "segmentation"
DIM = 192  # TerraMind tiny, so the tests can put a tiny encoder in front
CASES = {
    # name: (channels, num_convs, channel_list, classes, batch, grid h, grid w)
    "a": (16, 4, None, 2, 1, 14, 14),
    "b": (12, 3, [8], 3, 1, 14, 14),
}


class Model(torch.nn.Module):
    def __init__(self, channels, num_convs, channel_list, classes):
        super().__init__()
        self.decoder = FCNDecoder([DIM], channels=channels, num_convs=num_convs)
        self.head = SegmentationHead(channels, classes, channel_list=channel_list)

    def forward(self, tokens, grid, size):
        b, n, d = tokens.shape
        # ReshapeTokensToImage (remove_cls_token=False): [B, N, D] -> [B, D, h, w].
        image = tokens.reshape(b, grid[0], grid[1], d).permute(0, 3, 1, 2).contiguous()
        logits = self.head(self.decoder([image]))
        if logits.shape[-2:] != torch.Size(size):
            logits = F.interpolate(logits, size=size, mode="bilinear")
        return logits


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            if name.endswith("ln.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)


def build():
    state, io = {}, {}
    meta = {"torch": torch.__version__, "python": platform.python_version(), "dim": DIM, "cases": {}}
    try:
        import terratorch

        meta["terratorch"] = terratorch.__version__
    except Exception:  # noqa: BLE001
        pass
    for i, (case, (channels, num_convs, channel_list, classes, batch, gh, gw)) in enumerate(CASES.items()):
        torch.manual_seed(100 + i)
        model = Model(channels, num_convs, channel_list, classes).eval()
        randomize(model, 7 + i)
        tokens = torch.randn(batch, gh * gw, DIM, generator=torch.Generator().manual_seed(50 + i))
        size = (gh * 16, gw * 16)
        with torch.no_grad():
            logits = model(tokens, (gh, gw), size)
        for k, v in model.state_dict().items():
            state[f"{case}.model.{k}"] = v.clone()
        io[f"{case}.tokens"] = tokens
        io[f"{case}.logits"] = logits.contiguous()
        meta["cases"][case] = {
            "channels": channels,
            "num_convs": num_convs,
            "channel_list": channel_list,
            "classes": classes,
            "grid": [gh, gw],
            "size": list(size),
        }
    return state, io, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", action="store_true")
    args = ap.parse_args()
    state, io, meta = build()
    if args.verify:
        old = load_file(OUT / "io.safetensors")
        worst = max((old[k] - v).abs().max().item() for k, v in io.items())
        print(f"max abs diff against the stored fixture: {worst:.3g}")
        raise SystemExit(0 if worst <= 1e-5 else 1)
    OUT.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        sub = {k[len(case) + 1 :]: v for k, v in state.items() if k.startswith(case + ".")}
        torch.save({"state_dict": sub, "epoch": 3, "global_step": 120}, OUT / f"model_{case}.pt")
    save_file(io, OUT / "io.safetensors")
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
