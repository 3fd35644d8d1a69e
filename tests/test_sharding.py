"""A search spread over processes with torchrun (gloo, on this CPU): rank 0 searches, every rank scores
its share of each generation, and the archive is the one a single process writes with the same seed.
"""

import json
import os
import subprocess
import sys

import pytest

from hwnas.hardware.table import LatencyTable
from hwnas.process_group import leave
from hwnas.space import SearchSpace
from tests.cli import HWNAS, one_error_line

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "hwnas"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}  # torchrun gives each process one thread


def _search_args(mini_run, out) -> list[str]:
    mini = SearchSpace.load("mini")
    table = LatencyTable.load(mini_run["lut"], mini)
    budget = f"{table.predict(mini.min()) * 2.5:.6f}ms"
    return ["search", "--device", "cpu", "--space", "mini", "--lut", str(mini_run["lut"]), "--supernet",
            str(mini_run["ckpt"]), "--budget", budget, "--evals", "16", "--set", "per_generation=4",
            "--out", str(out)]  # fmt: skip


def _records(folder) -> list[tuple[str, dict]]:
    return [(r["arch"], r["values"]) for r in json.loads((folder / "archive.json").read_text())["records"]]


@pytest.mark.slow
def test_two_processes_write_the_archive_of_one(mini_run, tmp_path):
    one = subprocess.run([*HWNAS, *_search_args(mini_run, tmp_path / "one")], env=ONE_THREAD, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([*TORCHRUN, *_search_args(mini_run, tmp_path / "two")], env=ONE_THREAD,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    assert _records(tmp_path / "two") == _records(tmp_path / "one")  # the same archs, in order, the same scores
    assert len(_records(tmp_path / "one")) == 16
    best = [json.loads((tmp_path / f / "best.json").read_text()) for f in ("one", "two")]
    assert best[0] == best[1]
    assert two.stdout.count("chosen:") == 1  # rank 0 reports; rank 1 scored its shares quietly


@pytest.mark.slow
def test_a_search_with_nothing_to_share_refuses_several_processes(mini_run, tmp_path):
    args = _search_args(mini_run, tmp_path / "proxy")
    args[args.index("--supernet") : args.index("--supernet") + 2] = ["--proxy", "flops"]
    proc = subprocess.run([*TORCHRUN, *args], env=ONE_THREAD, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "error: this search runs in 2 processes (torchrun) but evaluates nothing on a supernet" in proc.stderr
    assert 'Traceback (most recent call last):\n  File "/' not in proc.stderr.split("ChildFailedError")[0]
    assert not (tmp_path / "proxy").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "env", [{"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "3"}, {"WORLD_SIZE": "two"}]
)
def test_a_launch_whose_numbers_do_not_fit_is_one_line(mini_run, tmp_path, env):
    proc = subprocess.run([*HWNAS, *_search_args(mini_run, tmp_path / "bad")], env={**ONE_THREAD, **env},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "torchrun's environment" in one_error_line(proc)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_evaluate_over_two_processes_gives_the_scores_of_one(mini_run, tmp_path):
    args = ["evaluate", "--supernet", str(mini_run["ckpt"]), "--arch", "max", "--input-size", "--batch-size", "5"]
    runs = {}
    for name, launcher in (("one", HWNAS), ("two", TORCHRUN)):
        proc = subprocess.run([*launcher, *args, "--json", str(tmp_path / f"{name}.json")], env=ONE_THREAD,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert proc.stdout.count("; scored at ") == 1  # rank 0 reports; rank 1 computed its share quietly
    one, two = (runs[k]["rows"] for k in ("one", "two"))
    assert [r["images"] for r in one] == [r["images"] for r in two] and one[0]["images"] % 5 != 0  # a short last batch
    assert [r["scores"] for r in two] == [r["scores"] for r in one]  # batches split over the ranks, scored by rank 0


def test_a_process_leaves_the_group_it_joined_before_exiting(tmp_path):
    # Left alive to interpreter exit, gloo's threads can abort a finished rank (SIGABRT, "terminate
    # called without an active exception"; pytorch/pytorch#190489): `hwnas`'s main leaves the group.
    import torch.distributed as dist

    leave()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    leave()
    assert not dist.is_initialized()
