"""`hwnas convert`: the authors' checkpoints become hwnas checkpoints whose models compute what
theirs compute. Ground truth: state dicts and eval outputs made by the authors' own code
(chakkritte/SalNAS, facebookresearch/AttentiveNAS) on a reduced-width configuration of their
supernet, by tools/salnas_fixtures.py (`tests/data/salnas/`). Their checkpoints are written here as
their training code saves them ({'state_dict': {'module.' + key: tensor}}), converted with the CLI,
and every subnet's eval output must match theirs within 1e-4, blur included."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.nn.authors import arch_from_settings, authors_params
from hwnas.nn.checkpoint import load
from hwnas.nn.supernet import Supernet
from hwnas.space import SearchSpace

DATA = Path(__file__).parent / "data" / "salnas"
runner = CliRunner()
TOL = 1e-4


def fixture(name: str) -> tuple[dict, np.lib.npyio.NpzFile]:
    return json.loads((DATA / f"{name}-tiny.json").read_text()), np.load(DATA / f"{name}-tiny.npz")


def space_toml(config: dict, resolutions: list, *, mix: list | None = None) -> str:
    """Their reduced configuration as an hwnas space: per-stage choices, the v3 head tied at 6x."""
    lines = [f'name = "tiny"\nresolutions = {resolutions}\nchoices = "stage"']
    stem = config["first_conv"]
    lines.append(f'[stem]\nwidths = {stem["c"]}\nkernel = 3\nstride = {stem["s"]}\nact = "swish"')
    for i in range(1, 8):
        st = config[f"mb{i}"]
        lines.append(
            f"[[stages]]\nwidths = {st['c']}\ndepths = {st['d']}\nkernels = {st['k']}\nexpansions = {st['t']}\n"
            f'se = {str(st["se"]).lower()}\nstride = {st["s"]}\nact = "swish"'
        )
    lines.append('[last_conv]\nexpand = 6\nact = "swish"' + (f"\nmix = {mix}" if mix else ""))
    return "\n".join(lines) + "\n"


def their_checkpoint(tmp_path: Path, name: str, wrap: str = "state_dict") -> Path:
    _, arrays = fixture(name)
    state = {"module." + k[len("state_dict/") :]: torch.from_numpy(np.array(arrays[k])) for k in arrays.files
             if k.startswith("state_dict/")}  # fmt: skip
    first = "module.decode_output0.0.conv.conv.weight"
    if first in state:  # allocated for last_conv.c, as at full size (1984 > 6 x 224): the extra columns never run
        extra = torch.randn(state[first].shape[0], 32, 3, 3, generator=torch.Generator().manual_seed(5))
        state[first] = torch.cat((state[first], extra), 1)
    path = tmp_path / f"{name}.pth.tar"
    torch.save({wrap: state, "epoch": 1}, path)
    return path


@pytest.fixture
def salnas(tmp_path):
    meta, arrays = fixture("salnas")
    (tmp_path / "tiny.toml").write_text(space_toml(meta["config"], [[256, 192]]))
    return meta, arrays, their_checkpoint(tmp_path, "salnas", wrap="student"), tmp_path / "tiny.toml"


def convert(*args: str) -> str:
    result = runner.invoke(app, ["convert", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_a_salnas_supernet_computes_what_theirs_computes(salnas, tmp_path):
    meta, arrays, source, toml = salnas
    out = tmp_path / "salnas.pt"
    said = convert("salnas", str(source), "--out", str(out), "--space", str(toml))
    assert "salnas layout" in said and "initialised fresh" not in said
    ckpt = load(out)
    model, space = ckpt.model(), ckpt.space
    image = torch.from_numpy(arrays["input"])
    for subnet in meta["subnets"]:
        arch = arch_from_settings(space, subnet["settings"])
        model.set_active(arch)
        with torch.no_grad():
            dynamic, extracted = model(image), model.extract(arch).eval()(image)
        theirs = arrays[f"output/{subnet['name']}"]
        assert np.abs(extracted.squeeze(1).numpy() - theirs).max() < TOL, subnet["name"]
        assert np.abs(dynamic.squeeze(1).numpy() - theirs).max() < TOL, subnet["name"]
        assert authors_params(space, arch) == subnet["params"]  # their count: unused shortcut convs too
    raw = Supernet(space, task="saliency/noblur")  # the same weights without the eval blur
    raw.load_state_dict(ckpt.data["model"])
    raw.eval().set_active(arch)
    with torch.no_grad():
        assert np.abs(raw(image).squeeze(1).numpy() - arrays[f"unblurred/{subnet['name']}"]).max() < TOL


@pytest.mark.slow
def test_a_salnas_subnet_exports_to_their_output_without_recalibration(salnas, tmp_path):
    meta, arrays, source, toml = salnas
    chosen = meta["subnets"][2]  # random0, as their sampler drew it
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(chosen["settings"]))
    out = tmp_path / "subnet.pt"
    said = convert("salnas", str(source), "--out", str(out), "--space", str(toml), "--arch", str(settings))
    assert "subnet" in said and load(out).data["kind"] == "subnet"
    result = runner.invoke(app, ["export", "--supernet", str(out), "--out", str(tmp_path / "x"), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    (onnx,) = (tmp_path / "x").glob("*.onnx")
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: arrays["input"]})
    assert np.abs(got.squeeze(1) - arrays["output/random0"]).max() < TOL


@pytest.mark.slow
def test_an_attentivenas_classifier_reproduces_their_logits(tmp_path):
    meta, arrays = fixture("attentivenas")
    config = meta["config"]
    toml = tmp_path / "tiny-imagenet.toml"
    toml.write_text(space_toml(config, [[96, 96], [128, 128]], mix=config["last_conv"]["c"]))
    out = tmp_path / "alphanet.pt"
    convert("alphanet", str(their_checkpoint(tmp_path, "attentivenas")), "--out", str(out), "--task",
            "classification", "--space", str(toml))  # fmt: skip
    ckpt = load(out)
    model, space = ckpt.model(), ckpt.space
    assert ckpt.num_classes == meta["classes"]
    image = torch.from_numpy(arrays["input"])
    for subnet in meta["subnets"]:
        arch = arch_from_settings(space, subnet["settings"])
        size = arch.resolution[0]  # their forward resizes the input (bicubic) to the subnet's resolution
        x = image if size == image.shape[-1] else F.interpolate(image, size=size, mode="bicubic")
        with torch.no_grad():
            logits = model.extract(arch).eval()(x).numpy()
        assert np.abs(logits - arrays[f"output/{subnet['name']}"]).max() < TOL, subnet["name"]
        assert authors_params(space, arch, "classification", meta["classes"]) == subnet["params"]


@pytest.mark.slow
def test_an_imagenet_supernet_brings_its_encoder_to_saliency_and_a_fresh_decoder(tmp_path):
    meta, arrays = fixture("attentivenas")
    toml = tmp_path / "tiny.toml"
    toml.write_text(space_toml(meta["config"], [[128, 128]]))
    out = tmp_path / "saliency.pt"
    said = convert("alphanet", str(their_checkpoint(tmp_path, "attentivenas")), "--out", str(out), "--space", str(toml))
    assert "initialised fresh" in said and "head" in said
    state = load(out).data["model"]
    assert np.array_equal(state["stem.conv.weight"].numpy(), arrays["state_dict/first_conv.conv.conv.weight"])
    their_last = arrays["state_dict/last_conv.final_expand_layer.bn.bn.running_var"]
    assert np.array_equal(state["last.bn.running_var"].numpy(), their_last)
    assert state["head.0.conv.weight"].shape[1] == their_last.shape[0]  # the decoder starts at the final expand


@pytest.mark.slow
def test_the_full_size_alphanet_counts_equal_the_authors_code():
    """6.348 M and 20.977 M (their code, with the saliency decoder: tools/salnas_fixtures.py)."""
    meta, _ = fixture("salnas")
    space = SearchSpace.load("alphanet")
    for which, arch in (("min", space.min()), ("max", space.max())):
        assert round(authors_params(space, arch) / 1e6, 3) == round(meta["full_size"][which]["params_m"], 3)
        assert arch == arch_from_settings(space, meta["full_size"][which]["settings"])


def refused(*args: str) -> str:
    result = runner.invoke(app, ["convert", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


class Payload:  # a class the file needs code to rebuild: a safe load refuses it
    def __reduce__(self):
        return (print, ("ran",))


@pytest.mark.slow
def test_bad_checkpoints_and_archs_are_refused_in_one_line_and_nothing_is_written(salnas, tmp_path):
    _, _, source, toml = salnas
    out = tmp_path / "out.pt"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, evil)
    assert "safe (weights_only) load refuses" in refused("salnas", str(evil), "--out", str(out))
    other = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(8, 3, 7, 7)}}, other)
    assert "not an AlphaNet/AttentiveNAS or SalNAS supernet" in refused("salnas", str(other), "--out", str(out))
    assert "has 14 MBConv blocks; space 'alphanet' has" in refused("salnas", str(source), "--out", str(out))
    wide = tmp_path / "wide.toml"  # the right block count, wider stem
    wide.write_text(toml.read_text().replace("widths = [8, 16]", "widths = [8, 24]", 1))
    assert "has shape (16, 3, 3, 3)" in refused("salnas", str(source), "--out", str(out), "--space", str(wide))
    assert "use `hwnas convert salnas`" in refused("alphanet", str(source), "--out", str(out), "--space", str(toml))
    assert "--task must be saliency or classification" in refused(
        "alphanet", str(source), "--out", str(out), "--task", "sod"
    )
    line = "256x192 s8 | w8 k3e1 | w16 k3e4 | w24 k3e4 | w24 k3e4 | w32 k3e4 | w40 k3e6 | w40 k3e6 | l999"
    assert "ties the last conv" in refused(
        "salnas", str(source), "--out", str(out), "--space", str(toml), "--arch", line
    )
    mixed = line.replace("w16 k3e4", "w16 k3e4 k5e4").replace("l999", "l240")
    assert "one kernel and one expansion per stage" in refused(
        "salnas", str(source), "--out", str(out), "--space", str(toml), "--arch", mixed
    )
    assert not out.exists()


@pytest.mark.slow
def test_training_starts_from_their_checkpoint_or_another_tasks_and_says_what_it_loaded(tmp_path):
    """`train supernet --init`: the authors' ImageNet supernet, and an hwnas classifier converted from
    it, both give a saliency supernet their encoder (unchanged at lr 1e-12 but for rounding) and a fresh
    decoder."""
    meta, arrays = fixture("attentivenas")
    config = meta["config"]
    toml, imagenet = tmp_path / "tiny.toml", tmp_path / "tiny-imagenet.toml"
    toml.write_text(space_toml(config, [[128, 128]]))
    imagenet.write_text(space_toml(config, [[96, 96], [128, 128]], mix=config["last_conv"]["c"]))
    theirs = their_checkpoint(tmp_path, "attentivenas")
    classifier = tmp_path / "classifier.pt"
    convert("alphanet", str(theirs), "--out", str(classifier), "--task", "classification", "--space", str(imagenet))
    small = ["--space", str(toml), "--epochs", "1", "--max-steps", "1", "--batch-size", "2", "--train-size", "4",
             "--val-size", "2", "--lr", "1e-12"]  # fmt: skip
    for init, kind in ((theirs, "attentivenas checkpoint"), (classifier, "hwnas classification supernet")):
        out = tmp_path / f"from-{init.stem}.pt"
        result = runner.invoke(app, ["train", "supernet", *small, "--init", str(init), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert f"({kind}): " in result.output and "initialised fresh: head" in result.output
        state = load(out).data["model"]
        stem = arrays["state_dict/first_conv.conv.conv.weight"]
        np.testing.assert_allclose(state["stem.conv.weight"].numpy(), stem, atol=1e-8)
        project = arrays["state_dict/blocks.13.mobile_inverted_conv.point_linear.conv.conv.weight"]
        np.testing.assert_allclose(state["stages.6.1.project.conv.weight"].numpy(), project, atol=1e-8)
    result = runner.invoke(app, ["train", "supernet", *small, "--init", str(theirs), "--out", str(out)])
    assert result.exit_code == 2 and "already holds one: add --fresh" in result.output
    result = runner.invoke(app, ["train", "supernet", *small[2:], "--space", "mini", "--init", str(theirs),
                                 "--out", str(tmp_path / "mini.pt")])  # fmt: skip
    assert result.exit_code == 2 and "space 'mini' has" in result.output and not (tmp_path / "mini.pt").exists()
