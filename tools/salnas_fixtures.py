"""Numeric fixtures from the authors' SalNAS code, for parity tests (issue 20).

Runs chakkritte/SalNAS's own supernet (`salnas/models/attentive_nas_dynamic_model.py`, which
builds on facebookresearch/AttentiveNAS) — nothing of it is copied here: it is imported from a
checkout the caller names — and writes numbers only:

- `salnas-tiny.npz`: the state dict of a reduced-width configuration of their supernet (the
  structure of `configs/train_alphanet_models.yml`, widths and depths cut down), weights seeded,
  BatchNorm statistics and affine parameters drawn at random so that BN is not the identity; the
  input image; for each subnet (min, max, two random ones, sampled by their
  `sample_active_subnet`), the eval output of the subnet their `get_active_subnet()` extracts —
  blurred as their `AttentiveNasStaticModel` does (kornia, 11x11, sigma 10.5) and, for
  debugging, unblurred.
- `salnas-tiny.json`: the reduced configuration, each subnet's settings as their code reports
  them (`get_active_subnet_settings`), the output size, their commit, and the parameter counts of
  the *full-size* configuration's min and max subnets with the decoder, measured on their code.

Needs: a checkout of chakkritte/SalNAS (`--salnas DIR`, the folder holding `salnas/`) and kornia
(their blur), e.g. `pip install --no-deps --target /tmp/kornia kornia kornia_rs` then
`PYTHONPATH=/tmp/kornia python tools/salnas_fixtures.py --salnas /tmp/SalNAS --out tests/data/salnas`.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

# The reduced configuration: their stage layout (strides, SE, activations, v3 head), small widths.
TINY = {
    "use_v3_head": True,
    "resolutions": [256],
    "first_conv": {"c": [8, 16], "act_func": "swish", "s": 2},
    "mb1": {"c": [8, 16], "d": [1, 2], "k": [3, 5], "t": [1], "s": 1, "act_func": "swish", "se": False},
    "mb2": {"c": [16, 24], "d": [1, 2], "k": [3, 5], "t": [4, 6], "s": 2, "act_func": "swish", "se": False},
    "mb3": {"c": [24, 32], "d": [1, 2], "k": [3, 5], "t": [4, 6], "s": 2, "act_func": "swish", "se": True},
    "mb4": {"c": [24, 32], "d": [1, 2], "k": [3, 5], "t": [4, 6], "s": 2, "act_func": "swish", "se": False},
    "mb5": {"c": [32, 40], "d": [1, 2], "k": [3, 5], "t": [4, 6], "s": 1, "act_func": "swish", "se": True},
    "mb6": {"c": [40, 48], "d": [1, 2], "k": [3, 5], "t": [6], "s": 2, "act_func": "swish", "se": True},
    "mb7": {"c": [40, 48], "d": [1, 2], "k": [3, 5], "t": [6], "s": 1, "act_func": "swish", "se": True},
    "last_conv": {"c": [288], "act_func": "swish"},  # = 6 x 48; the full size's 1984 exceeds 6 x 224 (test_convert)
}
OUTPUT_SIZE = [192, 256]  # the input size: hwnas predicts at the input size (their default is [480, 640])


def supernet_config(path: Path) -> dict:
    """`supernet_config` of their `configs/train_alphanet_models.yml` (the full-size space)."""
    import yaml

    return yaml.safe_load(path.read_text())["supernet_config"]


def randomise_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters drawn at random, so that no BN is the identity."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            if m.affine:
                m.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


def kaiming(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Their `weight_initialization` (kaiming normal, fan out, on every conv; linear layers normal
    with std 0.01), all from `generator`, so that a fixture depends on nothing but its seeds:
    with PyTorch's default init the output of this deep stack is flat (std 2e-3 before the blur),
    too flat for a parity test at 1e-4 to mean anything."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=generator) * (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, torch.nn.Linear):  # the classifier: a small normal, its bias zero
            m.weight.data.copy_(0.01 * torch.randn(m.weight.shape, generator=generator))
            if m.bias is not None:
                m.bias.data.zero_()


def params_millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def saliency_outputs(subnet, image: torch.Tensor) -> dict[str, np.ndarray]:
    """The extracted subnet's eval output, blurred (their static model's forward) and unblurred."""
    with torch.no_grad():
        blurred = subnet(image).numpy()
        subnet.blur = torch.nn.Identity()
        return {"output": blurred, "unblurred": subnet(image).numpy()}


def logits(subnet, image: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {"output": subnet(image).numpy()}


def run_subnets(model, image: torch.Tensor, outputs) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The supernet's state dict, the input, and for each of `SUBNETS` the arrays `outputs(subnet,
    image)` gives for the subnet their `get_active_subnet()` extracts (in eval: their
    DynamicBatchNorm2d refuses eval mode, so subnets are evaluated extracted, on the supernet's BN
    statistics sliced), with its settings and parameter count."""
    arrays = {f"state_dict/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    arrays["input"] = image.numpy()
    subnets = []
    for name in SUBNETS:
        settings = sample(model, name)
        extracted = model.get_active_subnet(preserve_weight=True).eval()
        params = sum(p.numel() for p in extracted.parameters())
        arrays.update({f"{kind}/{name}": value for kind, value in outputs(extracted, image).items()})
        subnets.append({"name": name, "settings": settings, "params": params})
    return arrays, subnets


def salnas_fixture(checkout: Path, out: Path) -> dict:
    """salnas-tiny.npz/.json from chakkritte/SalNAS (module docstring)."""
    sys.path.insert(0, str(checkout))  # a tool, not library code: their package from their checkout
    from salnas.models.attentive_nas_dynamic_model import AttentiveNasDynamicModel

    torch.manual_seed(0)
    random.seed(0)
    full = {}
    for which in ("min", "max"):  # parameter counts of the full-size space, with the decoder
        config = supernet_config(checkout / "configs/train_alphanet_models.yml")
        big = build(AttentiveNasDynamicModel, config, output_size=[480, 640])
        getattr(big, f"sample_{which}_subnet")()
        extracted = big.get_active_subnet(preserve_weight=True)
        full[which] = {"settings": big.get_active_subnet_settings(), "params_m": params_millions(extracted)}
        del big, extracted

    model = build(AttentiveNasDynamicModel, copy.deepcopy(TINY), output_size=OUTPUT_SIZE)
    seed_weights(model)
    image = torch.randn(1, 3, 192, 256, generator=torch.Generator().manual_seed(2))
    arrays, subnets = run_subnets(model, image, saliency_outputs)
    source = "chakkritte/SalNAS, salnas/models/attentive_nas_dynamic_model.py, run by tools/salnas_fixtures.py"
    blur = {"kernel": [11, 11], "sigma": [10.5, 10.5], "library": "kornia.filters.GaussianBlur2d"}
    return _write(out, "salnas-tiny", arrays, source, checkout, config=TINY, output_size=OUTPUT_SIZE, bn=BN,
                  blur=blur, subnets=subnets, full_size=full)  # fmt: skip


def losses_fixture(checkout: Path, out: Path) -> dict:
    """salnas-losses.npz/.json: their saliency loss terms (`salnas/losses/loss.py`: `kldiv`, `cc`,
    `nss`) on three seeded 24x32 maps, ground truths and fixation maps; one image's fixations fall
    where the map is low, so that the batch's NSS is not each image's."""
    sys.path.insert(0, str(checkout))
    from salnas.losses import loss as theirs  # imports cv2

    g = torch.Generator().manual_seed(4)
    pred = torch.sigmoid(torch.randn(3, 24, 32, generator=g))
    gt = torch.rand(3, 24, 32, generator=g) ** 2
    fix = (torch.rand(3, 24, 32, generator=g) < 0.03).float()
    fix[2] = (pred[2] < 0.2).float() * (torch.rand(24, 32, generator=g) < 0.3).float()
    values = {
        "kldiv": float(theirs.kldiv(pred, gt)),
        "cc": float(theirs.cc(pred, gt)),
        "nss": float(theirs.nss(pred, fix)),
    }
    arrays = {"pred": pred.numpy(), "gt": gt.numpy(), "fix": fix.numpy()}
    source = "chakkritte/SalNAS, salnas/losses/loss.py (kldiv, cc, nss), run by tools/salnas_fixtures.py"
    return _write(out, "salnas-losses", arrays, source, checkout, values=values)


def attentivenas_fixture(checkout: Path, out: Path) -> dict:
    """attentivenas-tiny.npz/.json from facebookresearch/AttentiveNAS: the classification supernet
    (v3 head: final expand, pooling, feature mix, linear classifier) of the same reduced
    configuration, with `CLASSES` classes, and the eval logits of the same four subnets on a batch
    of two images (their forward squeezes a batch of one to a vector)."""
    sys.path.insert(0, str(checkout))
    from models.attentive_nas_dynamic_model import AttentiveNasDynamicModel

    torch.manual_seed(0)
    random.seed(0)
    config = {**copy.deepcopy(TINY), "resolutions": [96, 128], "last_conv": {"c": [64, 80], "act_func": "swish"}}
    model = build(AttentiveNasDynamicModel, config, n_classes=CLASSES)
    seed_weights(model)
    image = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    arrays, subnets = run_subnets(model, image, logits)
    source = "facebookresearch/AttentiveNAS, models/attentive_nas_dynamic_model.py (tools/salnas_fixtures.py)"
    return _write(out, "attentivenas-tiny", arrays, source, checkout, config=config, classes=CLASSES, bn=BN,
                  subnets=subnets)  # fmt: skip


def full_size_checkpoint(checkout: Path, out: Path) -> None:
    """Their full-size SalNAS supernet (`configs/train_alphanet_models.yml`) with seeded random
    weights, saved as `train_salnas.py` saves it (`{'student': state_dict}`, ~90 MB: not a test
    fixture), with one 256x192 input and their eval outputs of the min and max subnets
    (`full-size-outputs.npz`), so that `hwnas convert salnas` can be checked on the real shapes."""
    sys.path.insert(0, str(checkout))
    from salnas.models.attentive_nas_dynamic_model import AttentiveNasDynamicModel

    torch.manual_seed(0)
    random.seed(0)
    model = build(AttentiveNasDynamicModel, supernet_config(checkout / "configs/train_alphanet_models.yml"),
                  output_size=[192, 256])  # fmt: skip
    seed_weights(model)
    image = torch.randn(1, 3, 192, 256, generator=torch.Generator().manual_seed(2))
    outputs = {"input": image.numpy()}
    for name in ("min", "max"):
        settings = sample(model, name)
        if name == "max":  # the max subnet at the 256x192 input (their max resolution is 384)
            model.set_active_subnet(256, settings["width"], settings["depth"], settings["kernel_size"],
                                    settings["expand_ratio"])  # fmt: skip
        with torch.no_grad():
            outputs[name] = model.get_active_subnet(preserve_weight=True).eval()(image).numpy()
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"student": {"module." + k: v for k, v in model.state_dict().items()}}, out / "salnas-full.pth.tar")
    np.savez_compressed(out / "full-size-outputs.npz", **outputs)


SUBNETS = ("min", "max", "random0", "random1")
BN = {"momentum": 0.1, "eps": 1e-5}  # what `build` sets: AttentiveNAS's defaults
CLASSES = 10


def build(model_class, config: dict, **kwargs):
    ns = SimpleNamespace(**{k: SimpleNamespace(**v) if isinstance(v, dict) else v for k, v in config.items()})
    return model_class(ns, bn_param=(BN["momentum"], BN["eps"]), **kwargs)


def seed_weights(model: torch.nn.Module) -> None:
    kaiming(model, torch.Generator().manual_seed(3))
    randomise_batchnorm(model, torch.Generator().manual_seed(1))
    model.eval()


def sample(model, name: str) -> dict:
    """Their min, max or a random subnet (`sample_active_subnet`, Python's `random`), as their code
    reports its settings."""
    if name == "min":
        model.sample_min_subnet()
    elif name == "max":
        model.sample_max_subnet()
    else:
        model.sample_active_subnet()
    return model.get_active_subnet_settings()


def _write(out: Path, stem: str, arrays: dict, source: str, checkout: Path, **fields) -> dict:
    """`stem`.npz (the arrays) and `stem`.json (where they came from, the checkout's commit, `fields`)."""
    meta = {"source": source, "commit": _commit(checkout), **fields}
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{stem}.npz", **arrays)
    (out / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--salnas", type=Path, help="a checkout of chakkritte/SalNAS")
    parser.add_argument("--attentivenas", type=Path, help="a checkout of facebookresearch/AttentiveNAS")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz/.json fixtures")
    parser.add_argument("--full-size", type=Path, help="also write their full-size checkpoint and outputs here")
    args = parser.parse_args()
    if args.full_size and args.salnas:
        full_size_checkpoint(args.salnas, args.full_size)
    if args.salnas:
        meta = salnas_fixture(args.salnas, args.out)
        print("SalNAS full-size params (M):", {k: round(v["params_m"], 3) for k, v in meta["full_size"].items()})
        print("SalNAS tiny subnets' params:", {s["name"]: s["params"] for s in meta["subnets"]})
        print("SalNAS loss terms:", losses_fixture(args.salnas, args.out)["values"])
    if args.attentivenas:
        meta = attentivenas_fixture(args.attentivenas, args.out)
        print("AttentiveNAS tiny subnets' params:", {s["name"]: s["params"] for s in meta["subnets"]})


def _commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
