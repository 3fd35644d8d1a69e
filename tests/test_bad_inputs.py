"""The bad-input catalogue: every CLI verb and every file format hwnas reads, given malformed,
truncated, wrong-type, out-of-range, empty and foreign values. Each must give one `error:` line
that names the problem, exit code 2, and leave no file behind. Structured inputs (arch JSON,
device and space TOML, budgets, agent jobs) are also fuzzed with hypothesis: they either parse or
raise the module's own error, never anything else.

Verb-specific cases that need heavier setup live beside their features (test_export, test_agent,
test_train, test_profile_cli, test_energy); this file is the index that covers them all once.
"""

import json
import os
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwnas.errors import ArchError, SpaceError
from hwnas.hardware.device import DeviceError, packaged_dir, parse_device
from hwnas.search import BudgetError, parse_budget
from hwnas.space import SearchSpace
from tests.cli import one_error_line, run_cli
from tests.segdata import write_cityscapes, write_images_masks

ROOT = Path(__file__).resolve().parents[1]
DEVICES = str(packaged_dir())


def _duts(root: Path, *, mask_value: int = 255, mask_size: tuple[int, int] = (16, 16)) -> None:
    """A two-image DUTS-TR folder whose masks are grey (`mask_value`) or of another size."""
    from PIL import Image

    for folder in ("DUTS-TR-Image", "DUTS-TR-Mask"):
        (root / "DUTS-TR" / folder).mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (16, 16), (200, 30, 30)).save(root / "DUTS-TR" / "DUTS-TR-Image" / f"{name}.jpg")
        Image.new("L", mask_size, mask_value).save(root / "DUTS-TR" / "DUTS-TR-Mask" / f"{name}.png")


def _inputs(tmp: Path, mini_run: dict) -> dict[str, str]:
    """Bad files of every format, written into `tmp`; names are substituted into the cases' args."""
    (tmp / "bad.toml").write_text('name = "x"\n[[stages]\n')
    (tmp / "empty.toml").write_text("")
    (tmp / "trunc.json").write_text('{"resolution": [32, 32], "stem": 8')
    (tmp / "list.json").write_text("[1, 2]")
    mini, alphanet = SearchSpace.load("mini"), SearchSpace.load("alphanet")
    (tmp / "wrongtype.json").write_text(json.dumps({**mini.arch_to_dict(mini.min()), "stem": "8"}))
    (tmp / "other.json").write_text(json.dumps(alphanet.arch_to_dict(alphanet.max())))
    (tmp / "device.toml").write_text('name = "d"\nbackend = "onnxruntime"\nbatch = 0\n')
    (tmp / "garbage.parquet").write_bytes(os.urandom(256))
    (tmp / "garbage.json").write_text(json.dumps({"schema_version": 3}))
    table = mini_run["lut"].read_bytes()
    sidecar = json.loads(mini_run["lut"].with_suffix(".json").read_text())
    (tmp / "trunc-table.json").write_text(json.dumps(sidecar))
    (tmp / "trunc-table.parquet").write_bytes(table[: len(table) // 2])
    (tmp / "garbage.pt").write_bytes(os.urandom(4096))
    (tmp / "data" / "images" / "train").mkdir(parents=True)
    _duts(tmp / "duts-grey", mask_value=128)
    _duts(tmp / "duts-size", mask_size=(20, 12))
    write_cityscapes(tmp / "cs-id", bad_id=40, cities={"train": ["aachen"], "val": ["ulm"]})
    write_cityscapes(tmp / "cs-size", label_size=(30, 16), cities={"train": ["aachen"], "val": ["ulm"]})
    write_cityscapes(tmp / "cs-city", skip_labels="ulm", cities={"train": ["aachen"], "val": ["ulm"]})
    write_images_masks(tmp / "masks-id", classes=["a", "b", "c"], n=2, bad_id=7)
    (tmp / "search").mkdir()
    (tmp / "search" / "archive.json").write_text('{"format": "hwnas-archive", "records": [')
    return {"T": str(tmp), "LUT": str(mini_run["lut"]), "CKPT": str(mini_run["ckpt"])}


CASES = [
    # space: presets and TOML files
    (
        "space-unknown",
        "space nosuch",
        "unknown search space 'nosuch'; presets: alphanet, alphanet-block, alphanet-imagenet, mini",
    ),
    # convert: the authors' checkpoints (the parity and shape cases are in test_convert)
    ("convert-garbage", "convert salnas T/garbage.pt --out T/c.pt", "corrupted or not a torch file"),
    ("convert-hwnas-file", "convert alphanet CKPT --out T/c.pt", "not an AlphaNet/AttentiveNAS or SalNAS supernet"),
    (
        "convert-bad-task",
        "convert alphanet T/garbage.pt --out T/c.pt --task sod",
        "--task must be saliency or classification",
    ),
    ("space-malformed", "space T/bad.toml", "not valid TOML"),
    ("space-empty", "space T/empty.toml", "field 'name' must be a word"),
    # arch: JSON files
    ("arch-truncated", "arch T/trunc.json --space mini", "is not valid JSON"),
    ("arch-not-object", "arch T/list.json --space mini", "an arch must be a JSON object, got list"),
    ("arch-wrong-type", "arch T/wrongtype.json --space mini", "must be integers"),
    ("arch-foreign", "arch T/other.json --space mini", "arch is for space 'alphanet', not 'mini'"),
    ("arch-missing", "arch T/none.json --space mini", "does not exist"),
    ("arch-bad-task", "arch min --space mini --task detection", "unknown task 'detection'"),
    # devices: folders and spec files
    ("devices-missing-dir", "devices --devices-dir T/nodevices", "--devices-dir T/nodevices is not a folder"),
    ("device-spec-out-of-range", "profile --device T/device.toml --space mini", "'batch' must be a positive integer"),
    ("device-unknown", "profile --device gpu9 --space mini DEV", "unknown device 'gpu9'"),
    # profile flags
    (
        "profile-resolution",
        "profile --device cpu --space mini --resolution 33x33 DEV",
        "resolution 33x33 is not in space 'mini'",
    ),
    (
        "profile-rounds",
        "profile --device cpu --space mini --rounds 0 DEV --out T/p.parquet",
        "--rounds must be at least 1",
    ),
    (
        "profile-precise-to-zero",
        "profile --device cpu --space mini --precise-to 0 DEV --out T/p.parquet",
        "--precise-to must be a positive percentage (e.g. 3 for +-3%), got 0%",
    ),
    (
        "profile-precise-to-negative",
        "profile --device cpu --space mini --precise-to -3 DEV --out T/p.parquet",
        "--precise-to must be a positive percentage",
    ),
    (
        "profile-max-rounds",
        "profile --device cpu --space mini --rounds 4 --max-rounds 2 DEV --out T/p.parquet",
        "--max-rounds (2) must be at least the rounds every row gets (4)",
    ),
    (
        "profile-strict-remote",
        "profile --device cpu --space mini --strict --remote http://127.0.0.1:9 --token 0123456789abcdef DEV "
        "--out T/p.parquet",
        "--strict needs the measuring machine's state (governor, other processes, steal), which the agent at "
        "http://127.0.0.1:9 does not report",
    ),
    (
        "validate-strict-remote",
        "lut validate --device cpu --space mini --lut LUT --strict --remote http://127.0.0.1:9 "
        "--token 0123456789abcdef DEV",
        "--strict needs the measuring machine's state",
    ),
    (
        "profile-fewshot-strict",
        "profile --device cpu --space mini --few-shot 4 --strict DEV --out T/p.parquet",
        "--strict: for a full profile's blocks; --few-shot N measures N whole subnets in --rounds rounds",
    ),
    ("doctor-seconds", "doctor --device cpu --seconds 0 DEV", "--seconds must be positive, got 0.0"),
    ("doctor-unknown-device", "doctor --device gpu9 DEV", "unknown device 'gpu9'"),
    (
        "profile-statistic",
        "profile --device cpu --space mini --statistic mean DEV --out T/p.parquet",
        "unknown --statistic 'mean'",
    ),
    (
        "profile-energy-remote-meter",
        "profile --device cpu --space mini --energy --meter joulemeter DEV --out T/p.parquet",
        "unknown meter 'joulemeter'",
    ),
    (
        "profile-classes",
        "profile --device cpu --space mini --task saliency --classes 4 DEV --out T/p.parquet",
        "--classes is a positive class count for the segmentation or classification head; got 4 for saliency",
    ),  # fmt: skip
    # latency tables and sidecars
    ("lut-garbage", "lut validate --device cpu --space mini --lut T/garbage.parquet DEV", "is damaged or truncated"),
    (
        "lut-truncated",
        "lut validate --device cpu --space mini --lut T/trunc-table.parquet DEV",
        "is damaged or truncated",
    ),
    (
        "lut-missing",
        "lut validate --device cpu --space mini --lut T/none.parquet DEV",
        "does not exist; build it with `hwnas profile`",
    ),
    ("lut-other-space", "lut validate --device cpu --space alphanet --lut LUT DEV", "was built for space 'mini'"),
    ("lut-samples", "lut validate --device cpu --space mini --lut LUT --samples 2 DEV", "--samples must be at least 4"),
    (
        "profile-fewshot-no-sources",
        "profile --device cpu-torch --space mini --resolution 32x32 --few-shot 6 --out T/search/t.parquet DEV",
        "has none measured for space 'mini'",
    ),
    (
        "profile-fewshot-too-few",
        "profile --device cpu-torch --space mini --resolution 32x32 --few-shot 2 --source LUT --out T/t.parquet DEV",
        "--few-shot 2 is too few for 1 source table(s)",
    ),
    (
        "profile-fewshot-own-device",
        "profile --device cpu --space mini --resolution 32x32 --few-shot 6 --source LUT --out T/t.parquet DEV",
        "it is a table of 'cpu' itself",
    ),
    (
        "profile-fewshot-energy",
        "profile --device cpu-torch --space mini --few-shot 6 --energy --out T/t.parquet DEV",
        "--few-shot predicts latency only",
    ),
    (
        "profile-fewshot-choose",
        "profile --device cpu-torch --space mini --resolution 32x32 --few-shot 6 --choose best --source LUT "
        "--out T/t.parquet DEV",
        "unknown --choose 'best'; allowed: spread, random",
    ),
    ("profile-source-alone", "profile --device cpu-torch --space mini --source LUT DEV", "add --few-shot N"),
    ("lut-transfer-device", "lut transfer --device tpu --out T/t.parquet", "has no latency column for device 'tpu'"),
    (
        "lut-transfer-samples",
        "lut transfer --device fpga --samples 1 --out T/t.parquet",
        "--samples must be at least 2",
    ),
    (
        "lut-transfer-benchmark",
        "lut transfer --device fpga --benchmark T/garbage.parquet --out T/t.parquet",
        "is not a readable Parquet table",
    ),
    # training: data folders, flags, checkpoints
    ("train-data-missing", "train supernet --space mini --data T/nodata --out T/x.pt", "neither a built-in set"),
    (
        "train-data-incomplete",
        "train supernet --space mini --data T/data --out T/x.pt",
        "no dataset format found in T/data (it holds: images); known formats: SALICON",
    ),
    # dataset folders and evaluation
    ("data-check-missing", "data check T/nodata", "data folder T/nodata does not exist"),
    ("data-check-unknown", "data check T/data", "no dataset format found in T/data"),
    ("data-check-json", "data check T/duts-size --json T/data", "--json file T/data is a folder"),
    ("data-check-mask-size", "data check T/duts-size", "a mask must have its image's size"),
    ("data-check-label-id", "data check T/cs-id", "holds 40, outside the class list: allowed are label ids 0..33"),
    ("data-check-label-size", "data check T/cs-size", "a label map must have its image's size"),
    ("data-check-no-city", "data check T/cs-city", "missing folder gtFine/val/ulm (the labels of leftImg8bit/val/ulm)"),
    ("data-check-class-id", "data check T/masks-id", "holds 7, outside the class list: allowed are class ids 0..2"),
    ("evaluate-split", "evaluate --supernet CKPT --arch min --split train", "--split must be one of val, test"),
    ("evaluate-sauc", "evaluate --supernet CKPT --arch min --sauc judd", "--sauc must be one of all, mit"),
    ("evaluate-data-missing", "evaluate --supernet CKPT --arch min --data T/nodata", "data folder T/nodata does not"),
    ("evaluate-task", "evaluate --supernet CKPT --arch min --data T/duts-grey", "holds no saliency dataset"),
    ("evaluate-ckpt", "evaluate --supernet T/garbage.pt --arch min", "corrupted or not a torch file"),
    ("evaluate-arch", "evaluate --supernet CKPT --arch T/trunc.json", "is not valid JSON"),
    (
        "evaluate-submission-file",
        "evaluate --supernet CKPT --arch min --submission T/bad.toml",
        "--submission folder T/bad.toml exists and is not empty",
    ),
    ("train-epochs", "train supernet --space mini --epochs 0 --out T/x.pt", "epochs must be at least 1"),
    ("train-precision", "train supernet --space mini --precision fp8 --out T/x.pt", "unknown --precision 'fp8'"),
    (
        "train-fp16-cpu",
        "train supernet --space mini --precision fp16 --out T/x.pt",
        "--precision fp16 needs a CUDA device",
    ),
    ("train-task", "train supernet --space mini --task sod/afe2 --out T/x.pt", "unknown SOD task 'sod/afe2'"),
    (
        "train-sod-mask-grey",
        "train supernet --space mini --task sod --data T/duts-grey --batch-size 1 --out T/x.pt",
        "is not binary",
    ),
    (
        "train-sod-mask-size",
        "train supernet --space mini --task sod --data T/duts-size --out T/x.pt",
        "a mask must have its image's size",
    ),
    ("train-sod-switch", "train supernet --space mini --focus --out T/x.pt", "switch parts of the sod head"),
    (
        "train-digits-saliency",
        "train supernet --space mini --data digits --out T/x.pt",
        "is for the classification task",
    ),
    ("selfkd-arch", "train selfkd --space mini --arch T/trunc.json --out T/x.pt", "is not valid JSON"),
    (
        "selfkd-teacher-precision",
        "train selfkd --space mini --arch min --teacher-precision half --out T/x.pt",
        "unknown teacher precision 'half'",
    ),
    (
        "selfkd-init-garbage",
        "train selfkd --space mini --arch min --init T/garbage.pt --out T/x.pt",
        "corrupted or not a torch file",
    ),
    (
        "postprocess-checkpoint",
        "train postprocess --supernet T/garbage.pt --arch min --out T/x.pt",
        "corrupted or not a torch file",
    ),
    (
        "postprocess-patience",
        "train postprocess --supernet CKPT --arch min --patience 0 --out T/x.pt",
        "max epochs and patience must be at least 1",
    ),
    ("postprocess-arch", "train postprocess --supernet CKPT --arch T/other.json --out T/x.pt", "is for space"),
    # search: budgets, flags, archives
    (
        "search-budget-unit",
        "search --device cpu --space mini --lut LUT --proxy flops --budget 30 DEV --out T/s",
        "is not a number with a unit",
    ),
    (
        "search-budget-negative",
        "search --device cpu --space mini --lut LUT --proxy flops --budget -3ms DEV --out T/s",
        "budget",
    ),
    (
        "search-proxy",
        "search --device cpu --space mini --lut LUT --proxy bananas --budget 30ms DEV --out T/s",
        "unknown --proxy 'bananas'",
    ),
    (
        "search-archive-truncated",
        "search --device cpu --space mini --lut LUT --proxy flops --budget 30ms DEV --out T/search",
        "archive T/search/archive.json is not valid JSON",
    ),
    (
        "search-checkpoint-garbage",
        "search --device cpu --space mini --lut LUT --supernet T/garbage.pt --budget 30ms DEV --out T/s",
        "corrupted or not a torch file",
    ),
    (
        "search-adapt-negative",
        "search --device cpu --space mini --lut LUT --supernet CKPT --algo natv2 --adapt-epochs -1 --budget 30ms "
        "DEV --out T/s",
        "--adapt-epochs must not be negative",
    ),
    (
        "search-adapt-proxy",
        "search --device cpu --space mini --lut LUT --proxy flops --algo natv2 --adapt-epochs 1 --budget 30ms "
        "DEV --out T/s",
        "supernet adaptation needs a trained supernet",
    ),
    # report
    ("report-device-absent", "report --device m2 --space mini --arch min DEV", "device 'm2' cannot run on this host"),
    (
        "report-batch",
        "report --device cpu --space mini --arch min --batch 0 DEV",
        "--batch and --passes must be at least 1",
    ),
    (
        "report-region",
        "report --device cpu --space mini --arch min --region ZZZ DEV",
        "region 'ZZZ' is not in CodeCarbon's offline data",
    ),
    ("report-arch", "report --device cpu --space mini --arch T/other.json DEV", "arch is for space 'alphanet'"),
    # export
    ("export-format", "export --supernet CKPT --arch min --format pdf --out T/e DEV", "unknown export format(s) pdf"),
    ("export-checkpoint", "export --supernet T/garbage.pt --arch min --out T/e DEV", "corrupted or not a torch file"),
    (
        "export-no-device-specs",
        "export --supernet CKPT --arch min --out T/e --devices-dir T/nodevices",
        "--format onnx targets the device 'cpu' by default",
    ),
    # agent
    ("agent-port", "agent --port 0 --token 0123456789abcdef0123", "--port must be 1-65535"),
    ("agent-open-without-token", "agent --host 0.0.0.0", "refusing to listen on 0.0.0.0 without a token"),
    (
        "remote-not-url",
        "profile --device cpu --space mini --remote mac:8765 --token 0123456789abcdef DEV",
        "--remote must be an http(s) URL",
    ),
    (
        "remote-no-token",
        "profile --device cpu --space mini --remote http://127.0.0.1:9 DEV",
        "--remote needs the agent's token",
    ),
    # outputs under a file: refused before any work (issue 18)
    ("train-out-under-a-file", "train supernet --space mini --out T/empty.toml/s.pt", "is not writable"),
    ("selfkd-out-under-a-file", "train selfkd --space mini --out T/empty.toml/s.pt", "is not writable"),
    (
        "search-out-under-a-file",
        "search --device cpu --space mini --lut LUT --proxy flops --budget 9ms --out T/empty.toml/s DEV",
        "search archive T/empty.toml/s/archive.json is not writable",
    ),
    (
        "report-json-under-a-file",
        "report --device cpu --space mini --arch min --json T/empty.toml/r.json DEV",
        "--json file T/empty.toml/r.json is not writable",
    ),  # fmt: skip
    (
        "validate-report-under-a-file",
        "lut validate --device cpu --space mini --lut LUT --report T/empty.toml/r DEV",
        "--report file T/empty.toml/r is not writable",
    ),  # fmt: skip
    (
        "profile-out-under-a-file",
        "profile --device cpu --space mini --out T/empty.toml/t.parquet DEV",
        "latency table T/empty.toml/t.parquet is not writable",
    ),  # fmt: skip
    (
        "search-set-unknown",
        "search --device cpu --space mini --lut LUT --proxy flops --budget 9ms --algo nsga2 --set population=8 "
        "--out T/s DEV",
        "nsga2 has no setting 'population'",
    ),
    (
        "search-set-malformed",
        "search --space nb201 --device pixel3 --budget 9ms --set gens --out T/s",
        "--set takes key=value, got 'gens'",
    ),  # fmt: skip
    (
        "search-set-choice",
        "search --space nb201 --device pixel3 --budget 9ms --algo natv2 --set init=random --out T/s",
        "--set init=random: allowed cost-uniform, depth-uniform",
    ),  # fmt: skip
    (
        "search-nb201-column",
        "search --space nb201 --device pixel9 --budget 9ms --out T/s",
        "no latency column for device 'pixel9'",
    ),  # fmt: skip
    ("export-arch-random-bad-space", "export --supernet CKPT --arch T/other.json --out T/e DEV", "alphanet"),
]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, args, message, tmp_path, mini_run, monkeypatch):
    subst = {**_inputs(tmp_path, mini_run), "DEV": f"--devices-dir {DEVICES}"}

    def fill(text: str) -> str:
        for key in ("DEV", "LUT", "CKPT"):
            text = text.replace(key, subst[key])
        return text.replace("T/", subst["T"] + "/")

    monkeypatch.delenv("HWNAS_AGENT_TOKEN", raising=False)
    before = _files(tmp_path)
    proc = run_cli(*shlex.split(fill(args)), check=False)
    line = one_error_line(proc)
    assert fill(message) in line, line
    assert _files(tmp_path) == before, f"{name} left files behind: {_files(tmp_path) - before}"


# ---- property-based: structured inputs parse or raise their own error ------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 300) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=30,
)
ARCH_KEYS = st.fixed_dictionaries(
    {},
    optional={k: JSON for k in ("space", "resolution", "stem", "stages", "last", "mix")},
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, ARCH_KEYS))
def test_any_json_is_an_arch_or_an_arch_error(mini, value):
    try:
        arch = mini.arch_from_dict(value)
    except ArchError:
        return
    assert mini.validate(arch) == arch


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_device_spec_or_a_device_error(text):
    try:
        parse_device(text, source="fuzz.toml")
    except DeviceError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_space_or_a_space_error(text):
    try:
        SearchSpace.from_toml(text, source="fuzz.toml")
    except SpaceError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=20))
def test_any_text_is_a_budget_or_a_budget_error(text):
    try:
        budget = parse_budget(text)
    except BudgetError:
        return
    assert budget.limit > 0


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["device", "task", "items", "space_toml", "protocol", "x"]), JSON, max_size=5))
def test_any_agent_job_validates_or_is_rejected_by_the_schema(job):
    from pydantic import ValidationError

    from hwnas.hardware.agent.wire import schemas

    try:
        schemas().model_validate(job)
    except ValidationError:
        pass


def test_catalogue_covers_every_cli_verb():
    from hwnas.cli import app

    verbs = {c.name or c.callback.__name__ for c in app.registered_commands}
    verbs |= {g.name for g in app.registered_groups}
    covered = {args.split()[0] for _, args, _ in CASES}
    assert verbs <= covered, f"verbs without a bad-input case: {verbs - covered}"
