"""Every verb is one library call: `profile`, `validate` and the training verbs from Python, as a
user's script calls them, with their inputs checked before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.errors import HwnasError
from hwnas.hardware.backends import Protocol
from hwnas.hardware.profiling import profile
from hwnas.hardware.table import LatencyTable
from hwnas.hardware.validation import validate
from hwnas.nn import load
from hwnas.space import SearchSpace
from hwnas.train.postprocess import post_process
from hwnas.train.runner import train_subnet, train_supernet

MICRO = str(Path(__file__).parent / "data" / "micro.toml")
QUICK = Protocol(warmup_min_calls=1, warmup_min_s=0.0, warmup_max_s=0.01, window=2, runs=3, min_run_s=0.0)
TINY = {"epochs": 1, "train_size": 32, "val_size": 16, "max_steps": 2, "batch_size": 16}


def test_profile_measures_each_block_once_and_a_rerun_measures_nothing(tmp_path):
    path = tmp_path / "micro.parquet"
    seen = []

    def blocks_done(done: int, total: int, label: str) -> None:
        if not label.startswith("whole subnets"):  # the end-to-end check reports its own progress
            seen.append(done)

    first = profile("cpu-torch", MICRO, rounds=2, out=path, protocol=QUICK, progress=blocks_done)
    blocks = len(SearchSpace.load(MICRO).all_block_signatures())
    assert len(first.table) == blocks and first.measured == 2 * blocks and first.found == 0
    stored = LatencyTable.load(path, SearchSpace.load(MICRO)).meta
    assert seen[-1] == 2 * blocks and stored["rounds"] == 2
    # the profile ended with its end-to-end check: 6 subnets per resolution, the held-out error stored
    assert first.validation is not None and len(first.validation.archs) == 6 * len(stored["resolutions"])
    assert set(stored["validation"]["heldout_mape"]) == {f.resolution for f in first.validation.fits}
    again = profile("cpu-torch", MICRO, rounds=2, out=path, protocol=QUICK)
    assert again.measured == 0 and again.found == 2 * blocks and again.validation is None  # checked already
    more = profile(
        "cpu-torch", MICRO, rounds=3, out=path, protocol=QUICK, validate=False, on_resume=lambda *a: seen.append(a)
    )
    assert more.measured == blocks and seen[-1] == (path, 2 * blocks, 3 * blocks) and more.validation is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolutions": ["64x64"]}, "resolution 64x64 is not in space 'micro'"),
        ({"resolutions": ["64-64"]}, "--resolution must look like 256x192"),
        ({"rounds": 0}, "--rounds must be at least 1"),
        ({"classes": 5}, "--classes is a positive class count"),
        ({"statistic": "mean"}, "unknown --statistic 'mean'"),
        ({"task": "depth"}, "unknown task 'depth'"),
    ],
)
def test_profile_refuses_bad_input_before_writing_anything(tmp_path, kwargs, message):
    with pytest.raises(HwnasError, match=message):
        profile("cpu-torch", MICRO, out=tmp_path / "t.parquet", protocol=QUICK, **kwargs)
    assert not list(tmp_path.iterdir())


def test_validate_from_python_stores_what_it_fitted_and_writes_its_report(tmp_path):
    path = tmp_path / "micro.parquet"
    profile("cpu-torch", MICRO, rounds=1, out=path, protocol=QUICK)
    result = validate("cpu-torch", path, space=MICRO, samples=8, rounds=1, report=tmp_path / "r.json", protocol=QUICK)
    assert result.table_path == str(path) and len(result.measured_ms) == len(result.archs) == 8
    assert (tmp_path / "r.json").is_file() and (tmp_path / "micro.json").is_file()
    stored = LatencyTable.load(path, SearchSpace.load(MICRO)).meta["validation"]
    assert stored["samples"] == 8 and stored["calibration_applied"] == {f.resolution: f.applied for f in result.fits}
    with pytest.raises(HwnasError, match="--samples must be at least 4 per resolution"):
        validate("cpu-torch", path, space=MICRO, samples=3, protocol=QUICK)


@pytest.mark.slow
def test_train_verbs_from_python_write_checkpoints_that_load(tmp_path):
    events = []
    supernet = train_supernet("mini", out=tmp_path / "s.pt", seed=3, on_event=events.append, **TINY)
    ckpt = load(supernet.result.checkpoint)
    assert supernet.rank == 0 and supernet.world == 1 and supernet.result.trained == 1
    assert ckpt.kind == "supernet" and ckpt.data["config"]["seed"] == 3 and ckpt.data["config"]["lr"] == 0.05
    assert any(type(e).__name__ == "EpochEvent" for e in events)
    again = train_supernet("mini", out=tmp_path / "s.pt", seed=3, **TINY)
    assert again.result.trained == 0  # resumed: the checkpoint already has its epoch
    subnet = train_subnet("min", init=tmp_path / "s.pt", method="baseline", out=tmp_path / "k.pt", **TINY)
    own = load(subnet.result.checkpoint)
    assert own.kind == "subnet" and own.arch == own.space.min() and own.space.name == "mini"
    done = post_process(tmp_path / "s.pt", "min", out=tmp_path / "p.pt", max_epochs=1, batch_size=16, max_steps=2)
    assert done.best_epochs == 1 and done.checkpoint.is_file() and done.report.is_file()


@pytest.mark.slow
def test_train_verbs_refuse_unknown_settings_and_bad_values(tmp_path):
    with pytest.raises(HwnasError, match="unknown training setting\\(s\\) epoch; allowed: epochs"):
        train_supernet("mini", out=tmp_path / "s.pt", epoch=1)
    with pytest.raises(HwnasError, match="lr must be a positive number"):
        train_subnet("min", "mini", out=tmp_path / "k.pt", lr=-1.0)
    with pytest.raises(HwnasError, match="--torch-device .tpu. is not a device torch runs hwnas on"):
        train_supernet("mini", out=tmp_path / "s.pt", torch_device="tpu")
    assert not list(tmp_path.iterdir())
