"""The authors' checkpoints read safely (`hwnas.nn.authors`), on state dicts their own code produced
(`tests/data/salnas/`, made by tools/salnas_fixtures.py): saved as their training code saves them
(`{'state_dict': ...}` of a DDP model, `module.` prefixes), each is recognised with its exact
tensors; what is not theirs, or needs code to unpickle, is refused in one line."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.errors import CheckpointError
from hwnas.nn.authors import read_foreign

DATA = Path(__file__).parent / "data" / "salnas"


def their_checkpoint(tmp_path: Path, name: str) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = np.load(DATA / f"{name}-tiny.npz")
    state = {k[len("state_dict/") :]: arrays[k] for k in arrays.files if k.startswith("state_dict/")}
    path = tmp_path / f"{name}.pth.tar"
    wrapped = {"module." + k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    torch.save({"state_dict": wrapped, "epoch": 360, "optimizer": {}}, path)
    return path, state


@pytest.mark.parametrize("name", ["salnas", "attentivenas"])
def test_their_checkpoints_are_recognised_with_their_exact_tensors(tmp_path, name):
    path, state = their_checkpoint(tmp_path, name)
    ckpt = read_foreign(path)
    assert ckpt.layout == name and set(ckpt.state) == set(state)
    assert all(np.array_equal(ckpt.state[k].numpy(), v) for k, v in state.items())
    config = json.loads((DATA / f"{name}-tiny.json").read_text())["config"]
    assert ckpt.blocks == sum(max(config[f"mb{i}"]["d"]) for i in range(1, 8))  # every stage at its deepest


@pytest.mark.slow
def test_what_is_not_theirs_is_refused_in_one_line(tmp_path):
    path, state = their_checkpoint(tmp_path, "salnas")
    resnet = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, resnet)
    with pytest.raises(CheckpointError, match="not an AlphaNet/AttentiveNAS or SalNAS supernet .*'conv1.weight'"):
        read_foreign(resnet)
    cut = tmp_path / "cut.pt"  # the decoder's keys missing: neither layout
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items() if not k.startswith("decode")}, cut)
    with pytest.raises(CheckpointError, match="not an AlphaNet/AttentiveNAS or SalNAS supernet"):
        read_foreign(cut)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_foreign(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_foreign(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match="corrupted or not a torch file"):
        read_foreign(garbage)


class Payload:
    """A class a pickle must import and call to load: what weights_only refuses."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_a_pickle_that_needs_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"first_conv.conv.conv.weight": torch.zeros(1)}, "extra": Payload()}, path,
               pickle_module=pickle)  # fmt: skip
    with pytest.raises(CheckpointError) as info:
        read_foreign(path)
    assert "safe (weights_only) load refuses" in str(info.value) and "\n" not in str(info.value)
    assert "this ran" not in capsys.readouterr().out
