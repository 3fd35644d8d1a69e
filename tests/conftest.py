"""Shared fixtures: search spaces and supernets with non-trivial batch-norm statistics."""

from __future__ import annotations

import os

import pytest
import torch

from hwnas.nn import Supernet
from hwnas.space import SearchSpace


@pytest.fixture(scope="session", autouse=True)
def _search_cache_in_tmp(tmp_path_factory):
    """Searches the tests run (in this process or a CLI subprocess) keep PNAG generators in a
    temporary folder, not in the user's ~/.cache/hwnas."""
    os.environ.setdefault("HWNAS_CACHE", str(tmp_path_factory.mktemp("hwnas-cache")))


@pytest.fixture(scope="session")
def alphanet() -> SearchSpace:
    return SearchSpace.load("alphanet")


@pytest.fixture(scope="session")
def mini() -> SearchSpace:
    return SearchSpace.load("mini")


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN layer random affine parameters and running statistics, so that eval-mode
    parity checks compare real normalisation, not the identity of freshly initialised BN."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


@pytest.fixture(scope="session")
def supernets(mini, alphanet):
    """One eval-mode supernet per (preset, task), built once for the session."""
    torch.manual_seed(0)
    nets = {}
    for space in (mini, alphanet):
        for task in ("saliency", "classification"):
            nets[space.name, task] = randomize_bn(Supernet(space, task=task, num_classes=10)).eval()
    return nets


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """What a user has after `hwnas profile` (cpu, mini at 32x32) and a 1-epoch `hwnas train supernet`
    on synthetic saliency data: `lut` and `ckpt` paths, built once for the session with the real CLI."""
    from tests.cli import run_cli

    root = tmp_path_factory.mktemp("mini-run")
    lut = root / "cpu-mini.parquet"
    run_cli(
        "profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--rounds", "2", "--out", str(lut)
    )
    ckpt = root / "supernet.pt"
    run_cli(
        "train", "supernet", "--space", "mini", "--epochs", "1", "--batch-size", "16",
        "--train-size", "64", "--val-size", "32", "--out", str(ckpt),
    )  # fmt: skip
    return {"lut": lut, "ckpt": ckpt}
