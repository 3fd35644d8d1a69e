"""BiSeNet's heads (MoSegNAS's decoder) against the BiSeNet reference implementation on identical
weights: tests/data/bisenet, written by tools/bisenet_fixtures.py from CoinCheung/BiSeNet's
BiSeNetV1 (its commit in heads.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hwnas.nn.heads.bisenet import BiSeNetHeads
from tools.bisenet_fixtures import seeded_state

DATA = Path(__file__).parent / "data" / "bisenet"

# their parameter names -> ours (longest prefixes first)
RENAMES = [
    ("cp.conv_avg.", "global_context."),
    ("cp.arm32.conv_atten.", "arm32.attention.conv."), ("cp.arm32.bn_atten.", "arm32.attention.bn."),
    ("cp.arm32.conv.", "arm32.conv."),
    ("cp.arm16.conv_atten.", "arm16.attention.conv."), ("cp.arm16.bn_atten.", "arm16.attention.bn."),
    ("cp.arm16.conv.", "arm16.conv."),
    ("cp.conv_head32.", "head32."), ("cp.conv_head16.", "head16."),
    ("sp.conv1.", "spatial.0."), ("sp.conv2.", "spatial.1."), ("sp.conv3.", "spatial.2."),
    ("sp.conv_out.", "spatial.3."),
    ("ffm.convblk.", "ffm.conv."), ("ffm.conv.", "ffm.attention.conv."), ("ffm.bn.", "ffm.attention.bn."),
    ("conv_out16.conv_out.", "aux8.out."), ("conv_out16.conv.", "aux8.conv."),
    ("conv_out32.conv_out.", "aux16.out."), ("conv_out32.conv.", "aux16.conv."),
    ("conv_out.conv_out.", "out.out."), ("conv_out.conv.", "out.conv."),
]  # fmt: skip


def _ours(name: str) -> str:
    for theirs, ours in RENAMES:
        if name.startswith(theirs):
            return ours + name[len(theirs) :]
    raise AssertionError(f"no counterpart for {name}")


def test_bisenet_heads_equal_the_reference_on_identical_weights():
    meta = json.loads((DATA / "heads.json").read_text())
    heads = BiSeNetHeads(c16=256, c32=512, num_classes=meta["classes"])
    state = {_ours(k): v for k, v in seeded_state(meta["shapes"]).items()}
    assert set(state) == set(heads.state_dict())  # every weight has its counterpart, none left over
    heads.load_state_dict(state)
    heads.train()  # the auxiliary heads run in training ...
    for m in heads.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()  # ... and BN uses its running statistics, as theirs did in eval mode
    with np.load(DATA / "heads.npz", allow_pickle=False) as z:
        with torch.no_grad():
            outputs = heads(*(torch.from_numpy(z[k]) for k in ("image", "at16", "at32")))
        for got, key in zip(outputs, ("out", "out16", "out32"), strict=True):
            expected = z[key]
            assert got.shape == expected.shape
            assert np.abs(got.numpy() - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    heads.eval()  # at inference only the main head's logits, at the image's size
    logits = heads(torch.zeros(1, 3, 32, 64), torch.zeros(1, 256, 2, 4), torch.zeros(1, 512, 1, 2))
    assert logits.shape == (1, 5, 32, 64)
