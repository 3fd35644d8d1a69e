"""`--torch-device` on every verb that runs a network: the work stays on the device asked for, and a
device this host lacks, an unknown one or a batch size of 0 is refused in one line.

This host has no GPU. A stand-in plays one (`tests.accelerator.MetaAccelerator`, named as such): the
model lives on torch's `meta` device and every operation is checked for a CPU tensor beside it, or
for network work done wholly on the CPU. On main before `--torch-device` reached evaluation, training
one subnet failed here at its first validation (a CPU image fed to the subnet), as on a CUDA host.
"""

import json
from pathlib import Path

import pytest
import torch

from hwnas.data import load_data
from hwnas.nn.factory import create
from hwnas.space import SearchSpace
from hwnas.torch_device import check_torch_device, device_of, torch_device
from hwnas.train.task import make_task
from hwnas.train.trainer import TrainConfig, fit
from tests.accelerator import MetaAccelerator
from tests.cli import one_error_line, run_cli

META = torch.device("meta")


@pytest.fixture(scope="module")
def small():
    mini = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(32, 32), seed=0, train_size=16, val_size=8)
    return mini, data, make_task("saliency", 1)


def _train_one_epoch(model, small, tmp_path: Path, method: str) -> dict:
    mini, data, task = small
    config = TrainConfig(epochs=1, batch_size=8, max_steps=1, method=method, bn_batches=1).validate()
    with MetaAccelerator() as gpu:
        result = fit(model, space=mini, data=data, task=task, config=config, out=tmp_path / "m.pt", device="meta",
                     resume=False)  # fmt: skip
    assert gpu.mixed == [] and gpu.on_host == [], (gpu.mixed[:3], gpu.on_host[:3])
    assert gpu.ops > 100 and device_of(model) == META
    return result.history[-1]


def test_training_one_subnet_validates_on_its_device(small, tmp_path):
    """The crash of a single subnet trained on CUDA: its validation fed it host images."""
    mini, _, _ = small
    record = _train_one_epoch(create(mini, task="saliency", seed=0, arch=mini.min()), small, tmp_path, "selfkd")
    assert "subnet" in record["val"]


def test_a_supernet_validates_its_subnets_on_its_device(small, tmp_path):
    """Each epoch's validation extracts subnets: built on the supernet's device, not copied to the CPU."""
    mini, _, _ = small
    record = _train_one_epoch(create(mini, task="saliency", seed=0), small, tmp_path, "baseline")
    assert len(record["val"]) >= 2  # the smallest and the largest subnet at least


@pytest.mark.parametrize("task", ["saliency", "sod+focus", "segmentation+aux", "classification"])
def test_extraction_builds_the_subnet_on_the_supernets_device(task):
    mini = SearchSpace.load("mini")
    supernet = create(mini, task=task, seed=0).to(META)
    subnet = supernet.extract(mini.max())
    assert {t.device for t in (*subnet.parameters(), *subnet.buffers())} == {META}


@pytest.mark.slow
def test_search_evaluate_and_postprocess_keep_their_work_on_the_device(mini_run, monkeypatch, tmp_path):
    """The verbs' own paths from a checkpoint: the search's evaluator, `evaluate` and `postprocess`,
    with the stand-in named as the user's --torch-device."""
    import hwnas.train.evaluation as evaluation
    import hwnas.train.postprocess as postprocess
    from hwnas.search.accuracy import SupernetEvaluator

    mini = SearchSpace.load("mini")
    evaluator = SupernetEvaluator(mini_run["ckpt"], mini)
    evaluator.model.to(META)
    with MetaAccelerator() as gpu:
        evaluator(mini.max())
    assert gpu.mixed == [] and gpu.on_host == [] and gpu.ops > 100
    stand_in = lambda text: META  # noqa: E731 - as `torch_device("cuda")` answers on a GPU host
    monkeypatch.setattr(evaluation, "torch_device", stand_in)
    monkeypatch.setattr(postprocess, "torch_device", stand_in)
    with MetaAccelerator() as gpu:
        evaluation.evaluate_checkpoint(mini_run["ckpt"], "max", original=False, device="cuda")
    assert gpu.mixed == [] and gpu.on_host == [] and gpu.ops > 100
    with MetaAccelerator() as gpu:
        postprocess.post_process(mini_run["ckpt"], "min", out=tmp_path / "post.pt", max_epochs=1, patience=1,
                                 batch_size=8, max_steps=1, device="cuda")  # fmt: skip
    assert gpu.mixed == [] and gpu.on_host == [] and gpu.ops > 100


def test_device_names_are_checked_as_text_and_against_the_host():
    for good in ("cpu", "cuda", "cuda:1", "mps"):
        assert check_torch_device(good) == good
    for bad in ("gpu", "cuda:", "CUDA", "cuda:x", "tpu", ""):
        with pytest.raises(Exception, match="allowed: cpu, cuda, cuda:N or mps"):
            check_torch_device(bad)
    assert torch_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="this host has no CUDA GPU"):
            torch_device("cuda:0")


VERBS = {
    "search": ["search", "--device", "cpu", "--space", "mini", "--budget", "30ms", "--proxy", "flops"],
    "evaluate": ["evaluate", "--supernet", "missing.pt"],
    "report": ["report", "--device", "cpu", "--space", "mini", "--arch", "min"],
    "export": ["export", "--supernet", "missing.pt"],
    "train supernet": ["train", "supernet", "--space", "mini"],
    "train selfkd": ["train", "selfkd", "--space", "mini"],
    "train postprocess": ["train", "postprocess", "--supernet", "missing.pt", "--arch", "min"],
}


@pytest.mark.slow
@pytest.mark.parametrize("verb", list(VERBS))
def test_every_network_verb_refuses_a_device_it_cannot_use_in_one_line(verb, tmp_path):
    args = [*VERBS[verb], "--out", str(tmp_path / "out")] if verb != "evaluate" and verb != "report" else VERBS[verb]
    line = one_error_line(run_cli(*args, "--torch-device", "tpu", check=False, cwd=tmp_path))
    assert "--torch-device 'tpu'" in line and "allowed: cpu, cuda, cuda:N or mps" in line
    if not torch.cuda.is_available() and verb in ("search", "train supernet"):  # where it is checked against the host
        line = one_error_line(run_cli(*args, "--torch-device", "cuda", check=False, cwd=tmp_path))
        assert "this host has no CUDA GPU" in line
    if verb in ("search", "evaluate", "train supernet"):
        line = one_error_line(run_cli(*args, "--batch-size", "0", check=False, cwd=tmp_path))
        assert "--batch-size must be at least 1, got 0" in line
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == []


def test_evaluation_batch_size_changes_speed_not_scores(small):
    from hwnas.train.evaluation import evaluate

    mini, data, task = small
    supernet = create(mini, task="saliency", seed=0)
    one = evaluate(supernet, data, task, arch=mini.max(), bn_batches=1, batch_size=3)
    other = evaluate(supernet, data, task, arch=mini.max(), bn_batches=1, batch_size=64)
    assert one.keys() == other.keys()
    for key in one:
        assert one[key] == pytest.approx(other[key], rel=1e-4, abs=1e-6), key
    json.dumps(one)  # plain floats
