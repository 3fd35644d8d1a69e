"""Write tests/data/bisenet/: BiSeNetV1's heads as the BiSeNet reference implementation runs them
(CoinCheung/BiSeNet `lib/models/bisenetv1.py`, imported from a checkout the caller names; nothing of
it is copied here), for `hwnas.nn.heads.bisenet.BiSeNetHeads` to be checked against in
tests/test_bisenet.py.

    git clone https://github.com/CoinCheung/BiSeNet /tmp/bisenet
    python tools/bisenet_fixtures.py --bisenet /tmp/bisenet --out tests/data/bisenet

Their ContextPath runs its ResNet-18 first; the heads are checked on given encoder features, so the
ResNet is replaced by a module that returns them. Every weight and BN statistic of the heads comes
from `seeded_state` (a generator seeded by the parameter's name), which the test repeats, so the
fixture holds only the names and shapes, the inputs and their model's three outputs (eval-mode BN;
their `aux_mode="train"` returns the main and the two auxiliary heads' logits, upsampled).

It also records the whole BiSeNetV1-R18 (their ResNet-18 and heads, `aux_mode="eval"`, 19 classes)
as they build it: its parameter count and its FLOPs on a 1024x2048 image by
`torch.utils.flop_counter.FlopCounterMode`, for the `mosegnas-basic` space's ResNet-18 member
to be checked against (tests/test_mosegnas.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

CLASSES = 5
IMAGE = (1, 3, 32, 64)  # the encoder's features at 1/16 and 1/32 of it
AT16 = (1, 256, 2, 4)
AT32 = (1, 512, 1, 2)


def seeded_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Weights anyone can make from the names alone: normal(0, 0.1) from a generator seeded with the
    name's CRC32, BN running variances in [0.5, 1.5) and BN weights near 1."""
    state = {}
    for name, shape in shapes.items():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith(".weight") and len(shape) == 1:  # a BN's scale
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[name] = 0.1 * torch.randn(shape, generator=g)
    return state


def inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(s).astype(np.float32) for s in (IMAGE, AT16, AT32))


class Given(nn.Module):
    """Stands for their ResNet-18: returns the encoder features it is given."""

    def __init__(self, at16: torch.Tensor, at32: torch.Tensor):
        super().__init__()
        self.at16, self.at32 = at16, at32

    def forward(self, x):
        return None, self.at16, self.at32


R18_INPUT, R18_CLASSES = (1, 3, 1024, 2048), 19


def r18_counts(bisenet_v1: type) -> dict:
    """Params and FLOPs of their BiSeNetV1-R18 in eval mode (no auxiliary heads), counted on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = bisenet_v1(n_classes=R18_CLASSES, aux_mode="eval").eval()
        image = torch.empty(R18_INPUT)
    params = sum(p.numel() for p in net.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(image)
    return {"input": list(R18_INPUT), "classes": R18_CLASSES, "params": params, "flops": counter.get_total_flops()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bisenet", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.bisenet))
    # their bisenetv1.py imports torchvision and never uses it; an empty module stands in where it is absent
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    from lib.models import resnet
    from lib.models.bisenetv1 import BiSeNetV1

    resnet.Resnet18.init_weight = lambda self: None  # it downloads ImageNet weights; replaced below anyway

    image, at16, at32 = inputs()
    r18 = r18_counts(BiSeNetV1)
    net = BiSeNetV1(n_classes=CLASSES, aux_mode="train")
    net.cp.resnet = Given(torch.from_numpy(at16), torch.from_numpy(at32))
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    net.load_state_dict(seeded_state(shapes))
    with torch.no_grad():
        main_out, out16, out32 = net.eval()(torch.from_numpy(image))
    commit = subprocess.run(["git", "-C", str(args.bisenet), "rev-parse", "HEAD"], capture_output=True, text=True)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "heads.npz", image=image, at16=at16, at32=at32, out=main_out.numpy(), out16=out16.numpy(),
        out32=out32.numpy(),
    )  # fmt: skip
    meta = {
        "bisenet_commit": commit.stdout.strip() or "unknown",
        "classes": CLASSES,
        "shapes": shapes,
        "bisenetv1_r18": r18,
    }
    (args.out / "heads.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
