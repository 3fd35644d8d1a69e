"""Supernet and subnet training: exact resume after a real kill, 2-process gloo DDP, Self-KD semantics,
learning, and the bad inputs (corrupted / foreign checkpoints, changed settings, a NaN loss)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.data import load_data
from hwnas.nn.checkpoint import CheckpointError, load
from hwnas.nn.factory import create
from hwnas.space import SearchSpace
from hwnas.train.selfkd import PKD, PSKD, SelfKD, fold_bn, mix, predict
from hwnas.train.task import SaliencyTask, make_task
from hwnas.train.trainer import TrainConfig, TrainingError, _Run, fit, sandwich, teacher_dtype
from tests.cli import HWNAS, one_error_line, run_cli

SMALL = ["--space", "mini", "--batch-size", "8", "--train-size", "48", "--val-size", "16", "--max-steps", "3"]


def _assert_same_state(a: dict, b: dict, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same_state(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


TIMING = {"seconds", "images_per_s"}


def _comparable(ckpt: dict) -> dict:
    history = [{k: v for k, v in row.items() if k not in TIMING} for row in ckpt["history"]]
    return {**ckpt, "history": history}


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    args = ["train", "supernet", *SMALL, "--epochs", "4", "--selfkd"]
    run_cli(*args, "--out", str(tmp_path / "straight.pt"))
    interrupted = tmp_path / "interrupted.pt"
    proc = subprocess.Popen(
        [*HWNAS, *args, "--out", str(interrupted)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not interrupted.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = load(interrupted).data["epoch"]
    assert 1 <= stopped_at < 4, "the run was not interrupted mid-training"
    resumed = run_cli(*args, "--out", str(interrupted))
    assert f"resumed from epoch {stopped_at}" in resumed.stderr  # said when it resumes, before training
    a, b = load(tmp_path / "straight.pt").data, load(interrupted).data
    assert b["epoch"] == 4 and int(b["distiller"]["teacher"]["n_averaged"]) >= 1
    _assert_same_state(_comparable(a), _comparable(b))
    # train_salnas.py's recipe: under Self-KD every subnet trains on gt_bar (no inplace KD); the
    # largest subnet has dropout and drop-connect 0.2
    assert (a["config"]["inplace_kd"], a["config"]["dropout"], a["config"]["drop_connect"]) == (False, 0.2, 0.2)


@pytest.mark.slow
def test_only_the_largest_subnet_of_a_supernet_step_is_regularised(monkeypatch):
    from hwnas.nn.supernet import Supernet

    seen = []
    original = Supernet.regularized

    def spy(self, **rates):
        seen.append((self.arch, rates))
        return original(self, **rates)

    monkeypatch.setattr(Supernet, "regularized", spy)
    space = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(64, 64), train_size=16, val_size=8)
    model = create(space, task="saliency", num_classes=1, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        fit(model, space=space, data=data, task=SaliencyTask(), config=TrainConfig(epochs=1, batch_size=8),
            out=Path(folder) / "r.pt")  # fmt: skip
    assert len(seen) == 2 and all(arch == space.max() for arch, _ in seen)  # 2 steps, 4 subnets each
    assert seen[0][1] == {"dropout": 0.2, "drop_connect": 0.2}


@pytest.mark.slow
def test_two_process_gloo_ranks_agree_after_every_step(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    cmd += ["-m", "hwnas.cli", "train", "supernet", *SMALL, "--epochs", "2", "--check-replicas", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stdout
    ckpt = load(out).data
    # 48 images / (8 per process x 2 processes) = 3 steps per epoch, each checked across ranks
    assert [row["replica_checks"] for row in ckpt["history"]] == [3, 3]


@pytest.mark.slow
def test_digits_subnet_learns_and_selfkd_teacher_follows_improvement(tmp_path):
    out = tmp_path / "digits.pt"
    proc = run_cli(
        "train",
        "selfkd",
        "--task",
        "classification",
        "--data",
        "digits",
        "--arch",
        "min",
        "--space",
        "mini",
        "--epochs",
        "3",
        "--max-steps",
        "30",
        "--out",
        str(out),
    )
    assert "top1" in proc.stdout
    ckpt = load(out).data
    history = ckpt["history"]
    assert history[-1]["val"]["subnet"]["top1"] > 0.6  # chance is 0.1
    improved = sum(row["teacher_updated"] for row in history)
    assert int(ckpt["distiller"]["teacher"]["n_averaged"]) == improved >= 1


def test_selfkd_averages_only_improving_students():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    kd = SelfKD(make_task("classification", 2), student, alpha=0.5)
    snapshots = []
    for epoch, val_loss in enumerate([1.0, 0.8, 0.9, 0.7]):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
            student[1].running_mean.add_(1.0)
        kd.end_epoch(student, val_loss, epoch)
        if val_loss in (1.0, 0.8, 0.7):
            snapshots.append({k: v.clone() for k, v in student.state_dict().items()})
    teacher = kd.teacher.module.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean"):
        expected = sum(s[key] for s in snapshots) / 3
        assert torch.allclose(teacher[key], expected, atol=1e-6), key
    assert int(kd.teacher.n_averaged) == 3 and kd.best == 0.7


def test_selfkd_target_is_eq3_from_the_second_epoch():
    task = SaliencyTask()
    model = create(SearchSpace.load("mini"), task="saliency", num_classes=1, seed=0)
    arch = SearchSpace.load("mini").min()
    kd = SelfKD(task, model, alpha=0.5)
    x, gt = torch.randn(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    assert kd.target(x, gt, {}, arch, epoch=0) is gt
    kd.end_epoch(model, 1.0, 0)
    teacher = kd.teacher.module
    teacher.set_active(arch)
    with torch.no_grad():
        p_avg = teacher.train()(x)
    target = kd.target(x, gt, {}, arch, epoch=1)
    assert torch.allclose(target, p_avg + (gt - p_avg) * 0.5, atol=1e-6)
    assert not target.requires_grad


def test_pskd_weight_grows_with_epochs():
    task = make_task("classification", 2)
    student = nn.Linear(3, 2)
    kd = PSKD(task, student, epochs=4)
    x, gt = torch.randn(5, 3), torch.eye(2)[[0, 1, 0, 1, 0]]
    assert kd.target(x, gt, {}, None, 0) is gt
    p = torch.softmax(student(x), 1).detach()
    # main_pskd.py: alpha_t = 0.8 (t + 1) / T from the second epoch (t = 1: 0.4 of 4 epochs)
    assert torch.allclose(kd.target(x, gt, {}, None, 1), mix(p, gt, 1 - 0.8 * 2 / 4))
    assert torch.allclose(kd.target(x, gt, {}, None, 3), mix(p, gt, 1 - 0.8))


@pytest.mark.slow
def test_pkd_student_fits_the_teachers_prediction_alone():
    """train_pkd (salnas/core/trainer.py): loss_func(student, teacher_prediction.detach()); no gt in it."""
    task = make_task("classification", 2)
    teacher = nn.Linear(3, 2)

    def make_optimizer(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    kd = PKD(task, teacher, make_optimizer=make_optimizer, grad_clip=0.0)
    x, gt = torch.randn(5, 3), torch.eye(2)[[0, 1, 0, 1, 0]]
    weight = teacher.weight.detach().clone()
    before = torch.softmax(teacher(x), 1).detach()
    assert torch.allclose(kd.target(x, gt, {}, None, 0), before)
    assert not torch.equal(teacher.weight, weight)  # the teacher took its own step on the ground truth


def test_sandwich_is_deterministic_per_step():
    space = SearchSpace.load("mini")
    a, b = sandwich(space, seed=3, step=7, k=2), sandwich(space, seed=3, step=7, k=2)
    assert a == b and a[0] == space.max() and a[1] == space.min() and len(a) == 4
    assert sandwich(space, seed=3, step=8, k=2)[2:] != a[2:]


# ---- bad input -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "one.pt"
    run_cli("train", "supernet", *SMALL, "--epochs", "1", "--out", str(out))
    return out


def test_any_garbage_file_is_a_checkpoint_error_not_a_crash(tmp_path):
    """200 seeded garbage files: torch.load raises UnpicklingError, IndexError, KeyError or
    UnicodeDecodeError on them; each must become one CheckpointError."""
    from hwnas.errors import CheckpointError

    path = tmp_path / "garbage.pt"
    for seed in range(200):
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
        with pytest.raises(CheckpointError, match="corrupted or not a torch file"):
            load(path)


@pytest.mark.slow
def test_corrupted_truncated_and_foreign_checkpoints(tmp_path, trained):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained.read_bytes()[:5000])
    foreign = tmp_path / "foreign.pt"
    torch.save(nn.Linear(2, 2).state_dict(), foreign)
    for path, message in ((garbage, "corrupted"), (truncated, "corrupted"), (foreign, "not an hwnas checkpoint")):
        line = one_error_line(
            run_cli(
                "train", "selfkd", "--space", "mini", "--init", str(path), "--out", str(tmp_path / "x.pt"), check=False
            )
        )
        assert message in line and str(path) in line
    other_space = tmp_path / "other.toml"
    other_space.write_text(SearchSpace.load("mini").toml.replace("expand = 4", "expand = 3"))
    line = one_error_line(
        run_cli("train", "supernet", *SMALL[2:], "--space", str(other_space), "--out", str(trained), check=False)
    )
    assert "trained on space 'mini'" in line
    line = one_error_line(run_cli("train", "supernet", *SMALL, "--lr", "0.2", "--out", str(trained), check=False))
    assert "lr=0.05 (now 0.2)" in line and "--fresh" in line


class DivergingTask(SaliencyTask):
    """Stands in for a diverging run: the loss turns NaN from the `after`-th call on (a real divergence
    with --lr 1e12 is in test_bad_flags, but it cannot be timed to happen after a checkpoint)."""

    def __init__(self, after: int):
        object.__setattr__(self, "calls", [0, after])

    def loss(self, output, target, batch):
        self.calls[0] += 1
        value = super().loss(output, target, batch)
        return value * float("nan") if self.calls[0] > self.calls[1] else value


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, trained):
    out = tmp_path / "nan.pt"
    out.write_bytes(trained.read_bytes())
    before = out.read_bytes()
    space = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(64, 64), train_size=48, val_size=16)
    config = TrainConfig(epochs=2, batch_size=8, max_steps=3)
    model = create(space, task="saliency", num_classes=1, seed=0)
    task = DivergingTask(after=5)  # the second subnet of epoch 2, step 2
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2 step 2.*last good checkpoint \(epoch 1\)"):
        fit(model, space=space, data=data, task=task, config=config, out=out)
    assert out.read_bytes() == before


@pytest.mark.slow
def test_bad_flags(tmp_path):
    for args, message in (
        (["train", "supernet", "--task", "sod/deep"], "unknown SOD task 'sod/deep'"),
        (["train", "supernet", "--epochs", "0"], "epochs must be at least 1"),
        (["train", "supernet", "--dropout", "1"], "dropout and drop_connect must be in [0, 1)"),
        (["train", "supernet", "--amp"], "needs a CUDA device"),
        (["train", "selfkd", "--method", "magic"], "unknown distillation method 'magic'"),
        (["train", "selfkd", "--arch", "big"], "unknown arch 'big'"),
        (["train", "selfkd", "--teacher-precision", "fp8"], "unknown teacher precision 'fp8'"),
        (["train", "supernet", "--data", str(tmp_path / "nope")], "neither a built-in set"),
        (["train", "supernet", "--batch-size", "999", "--train-size", "16"], "fewer than one step needs"),
        (["train", "supernet", *SMALL, "--lr", "1e12", "--grad-clip", "0"], "no checkpoint was written"),
    ):
        line = one_error_line(run_cli(*args, "--out", str(tmp_path / "x.pt"), check=False))
        assert message in line, line
    assert not (tmp_path / "x.pt").exists()


def test_selfkd_table_of_a_subnet_teacher_matches_its_batch_predictions():
    space = SearchSpace.load("mini")
    arch = space.min()
    model = create(space, task="saliency", num_classes=1, seed=0, arch=arch)
    images = torch.randn(10, 3, 32, 32)
    kd = SelfKD(SaliencyTask(), model, alpha=0.5, predict_all=lambda t: predict(t, SaliencyTask(), images, None))
    kd.end_epoch(model, 1.0, 0)
    rows = torch.tensor([7, 2, 5])
    gt = torch.rand(3, 1, 32, 32)
    from_table = kd.target(images[rows], gt, {"index": rows}, None, epoch=1)
    inline = mix(predict(kd.teacher.module, SaliencyTask(), images[rows], None), gt, 0.5)
    assert torch.allclose(from_table, inline, atol=1e-5)
    kd.end_epoch(model, 2.0, 1)  # no improvement: the table stays
    assert kd.table.rows is not None
    kd.end_epoch(model, 0.5, 2)  # a new S_avg: the table is recomputed on next use
    assert kd.table.rows is None


def _with_random_bn(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    return model


def test_folded_teacher_predicts_like_the_teacher_and_refreshes_like_a_fresh_copy():
    space = SearchSpace.load("mini")
    model = _with_random_bn(create(space, task="saliency", num_classes=1, seed=0, arch=space.max()), 1).eval()
    images = torch.randn(6, 3, 64, 64)
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    task = SaliencyTask()
    expected = predict(model, task, images, None)
    assert torch.allclose(
        predict(folded, task, images.contiguous(memory_format=torch.channels_last), None), expected, atol=1e-5
    )
    changed = _with_random_bn(model, 2)  # the teacher changes (as S_avg does): refresh in place
    with torch.no_grad():
        for p in changed.parameters():
            p.mul_(1.1)
    refreshed = fold_bn(changed, into=folded)
    assert refreshed is folded
    _assert_same_state(refreshed.state_dict(), fold_bn(changed).state_dict())  # what a resumed run builds


def test_pskd_teacher_predicts_from_a_table_refreshed_every_epoch():
    space = SearchSpace.load("mini")
    model = create(space, task="saliency", num_classes=1, seed=0, arch=space.min())
    images = torch.randn(10, 3, 32, 32)
    calls = []

    def predict_all(teacher):
        calls.append(1)
        return predict(teacher, SaliencyTask(), images, None)

    kd = PSKD(SaliencyTask(), model, epochs=4, predict_all=predict_all)
    rows, gt = torch.tensor([1, 8]), torch.rand(2, 1, 32, 32)
    for epoch in (1, 2):
        _with_random_bn(model, epoch)
        kd.end_epoch(model, 1.0, epoch - 1)
        for _ in range(3):
            target = kd.target(images[rows], gt, {"index": rows}, None, epoch=epoch)
        inline = mix(predict(kd.teacher, SaliencyTask(), images[rows], None), gt, 1 - 0.8 * (epoch + 1) / 4)
        assert torch.allclose(target, inline, atol=1e-5)
    assert len(calls) == 2  # once per teacher, not once per step


@pytest.mark.slow
def test_selfkd_subnet_resume_is_bit_identical(tmp_path):
    space = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(32, 32), seed=0, train_size=64, val_size=32)

    def train(out, until):
        model = create(space, task="saliency", num_classes=1, seed=0, arch=space.min())
        config = TrainConfig(epochs=4, method="selfkd", seed=0, batch_size=16)
        return fit(model, space=space, data=data, task=make_task("saliency"), config=config, out=out, until=until)

    train(tmp_path / "straight.pt", 4)
    train(tmp_path / "resumed.pt", 2)
    assert train(tmp_path / "resumed.pt", 4).resumed_from == 2
    straight, resumed = (load(tmp_path / f"{n}.pt").data for n in ("straight", "resumed"))
    assert sum(row["teacher_updated"] for row in straight["history"][1:]) >= 1  # the table was used
    _assert_same_state(_comparable(straight), _comparable(resumed))


def test_teacher_precision_resolves_and_a_bf16_table_stays_close_to_fp32(monkeypatch):
    cpu = torch.device("cpu")
    assert teacher_dtype("fp32", cpu) == torch.float32 and teacher_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert teacher_dtype("auto", cpu) == torch.float32  # no native bf16: emulated bf16 would be slower
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert teacher_dtype("auto", cpu) == torch.bfloat16

    space = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(32, 32), seed=0, train_size=64, val_size=32)
    tables = {}
    for precision in ("fp32", "bf16"):
        model = create(space, task="saliency", num_classes=1, seed=0, arch=space.min())
        config = TrainConfig(epochs=1, method="selfkd", seed=0, teacher_precision=precision)
        run = _Run(model, space=space, data=data, task=make_task("saliency"), config=config, out="x.pt", device="cpu")
        tables[precision] = run.teacher_table()(fold_bn(model))
    assert tables["bf16"].dtype == torch.float32
    gap = (tables["bf16"] - tables["fp32"]).abs().max() / tables["fp32"].abs().max()
    assert 0 < gap < 0.02  # computed in bf16 (not identical), within 2% of the map's peak


def test_a_pickled_model_is_refused_in_one_whole_sentence(tmp_path):
    """torch's weights_only refusal is many lines; the user gets one sentence that ends where it should."""
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a whole pickled module, as some tools save
    with pytest.raises(CheckpointError) as caught:
        load(tmp_path / "model.pt")
    message = str(caught.value)
    assert "holds Python objects beyond tensors" in message and "\n" not in message
    assert "(torch.nn.modules.linear.Linear)" in message and message.endswith("(`hwnas train supernet`)")
