"""`hwnas agent` for real: an agent process on 127.0.0.1 with the `cpu` device, a host building a
`mini` table through it (killed and restarted mid-table), a local validate of that table, and the
agent's refusals: tokens, oversized and malformed requests, a second host while busy."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from scipy.stats import spearmanr

from hwnas.hardware.device import packaged_dir
from hwnas.space import SearchSpace
from tests.cli import one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
DEVICES = str(packaged_dir())
TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(port: int) -> subprocess.Popen:
    env = {**os.environ, "HWNAS_AGENT_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "hwnas.cli", "agent", "--port", str(port), "--devices-dir", DEVICES]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/info", headers=_auth()).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the agent did not start: {proc.stdout.read()}")


def _auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def agent():
    port = free_port()
    proc = start_agent(port)
    yield {"url": f"http://127.0.0.1:{port}", "port": port, "proc": proc}
    proc.kill()
    proc.wait()


def _rows(path: Path) -> int:
    try:
        return len(pd.read_parquet(path))
    except Exception:  # not written yet, or being replaced
        return 0


@pytest.fixture(scope="module")
def remote_table(tmp_path_factory):
    """A mini table (32x32, one round) built through an agent that is SIGKILLed mid-table and
    restarted on the same port; the host waits for it and finishes."""
    port = free_port()
    first = start_agent(port)
    out = tmp_path_factory.mktemp("remote") / "cpu-mini.parquet"
    env = {**os.environ, "HWNAS_AGENT_TOKEN": TOKEN, "COLUMNS": "200"}
    host = subprocess.Popen(
        [sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32",
         "--rounds", "1", "--out", str(out), "--remote", f"http://127.0.0.1:{port}", "--devices-dir", DEVICES],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _rows(out) < 20 and time.monotonic() < deadline and host.poll() is None:
        time.sleep(0.2)
    rows_at_kill = _rows(out)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(3)  # the host keeps retrying while the agent is away
    second = start_agent(port)
    try:
        stdout, stderr = host.communicate(timeout=600)
    finally:
        second.kill()
        second.wait()
    return {"path": out, "rc": host.returncode, "stdout": stdout, "stderr": stderr, "rows_at_kill": rows_at_kill}


@pytest.mark.slow
def test_host_survives_the_agent_being_killed_mid_table(remote_table):
    assert remote_table["rc"] == 0, remote_table["stderr"]
    every = len(SearchSpace.load("mini").all_block_signatures([(32, 32)]))
    assert 20 <= remote_table["rows_at_kill"] < every
    rows = pd.read_parquet(remote_table["path"])
    assert len(rows) == every and not rows["key"].duplicated().any()
    assert (rows["rounds"] == 1).all() and (rows["median_ms"] > 0).all()


@pytest.mark.slow
def test_remote_rows_have_the_form_of_a_local_run_and_record_the_agent(remote_table, mini_run):
    remote, local = pd.read_parquet(remote_table["path"]), pd.read_parquet(mini_run["lut"])
    assert list(remote.columns) == list(local.columns)
    assert (remote.dtypes == local.dtypes).all()
    assert set(remote["key"]) == set(local["key"])
    meta = json.loads(remote_table["path"].with_suffix(".json").read_text())
    assert meta["measured_by"].startswith("http://127.0.0.1:")
    assert meta["host"]["agent"] == meta["measured_by"] and meta["host"]["system"]
    assert "onnxruntime" in meta["versions"]


@pytest.mark.slow
def test_local_validate_of_the_remote_table_passes_the_same_checks(remote_table, tmp_path):
    report = tmp_path / "report.json"
    proc = run_cli(
        "lut", "validate", "--device", "cpu", "--space", "mini", "--lut", str(remote_table["path"]),
        "--resolution", "32x32", "--samples", "8", "--rounds", "1", "--report", str(report), "--devices-dir", DEVICES,
    )  # fmt: skip
    assert "held-out, as stored" in proc.stdout
    data = json.loads(report.read_text())
    assert len(data["measured_ms"]) == 8 and all(m > 0 for m in data["measured_ms"])
    # the figures are the report's own numbers (timings on a loaded machine may even rank inversely)
    expected = spearmanr(data["raw_ms"], data["measured_ms"]).statistic
    assert data["all_raw"]["spearman_rho"] == pytest.approx(expected) and -1 <= expected <= 1


@pytest.mark.slow
def test_missing_or_wrong_token_is_refused(agent):
    for headers in ({}, _auth("wrong-token-0123456789"), {"Authorization": TOKEN}):
        response = httpx.get(f"{agent['url']}/v1/info", headers=headers)
        assert response.status_code == 401 and "token" in response.json()["detail"]
    line = one_error_line(
        run_cli("profile", "--device", "cpu", "--space", "mini", "--remote", agent["url"], "--token",
                "wrong-token-0123456789", "--devices-dir", DEVICES, check=False)
    )  # fmt: skip
    assert "answered 401" in line


def _job(items: list[dict]) -> dict:
    return {"device": "cpu", "items": items}


BLOCK = {"op": "conv", "h": 8, "w": 8, "cin": 3, "cout": 8, "kernel": 3, "out_h": 8, "out_w": 8}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"x" * (1 << 20 + 1), 413, "request body over"),
        (b"{not json", 422, "json"),
        (json.dumps(_job([{"kind": "block", "signature": {**BLOCK, "op": "exec"}}])).encode(), 422, "op"),
        (json.dumps(_job([{"kind": "block", "signature": {**BLOCK, "h": 10**9}}])).encode(), 422, "less than"),
        (json.dumps(_job([{"kind": "block", "signature": BLOCK}] * 4097)).encode(), 422, "at most 4096"),
        (json.dumps({**_job([{"kind": "block", "signature": BLOCK}]), "code": "import os"}).encode(), 422, "extra"),
        (json.dumps({**_job([{"kind": "block", "signature": BLOCK}]), "device": "m2"}).encode(), 422, "cannot run"),
        (json.dumps(_job([{"kind": "arch", "arch": {"stem": 8}}])).encode(), 422, "space_toml"),
    ],
)
def test_bad_requests_get_4xx_with_a_message_and_the_agent_keeps_serving(agent, body, status, message):
    headers = {**_auth(), "Content-Type": "application/json"}
    response = httpx.post(f"{agent['url']}/v1/jobs", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert message.lower() in response.text.lower()
    assert httpx.get(f"{agent['url']}/v1/info", headers=_auth()).json()["busy"] is False


@pytest.mark.slow
def test_a_second_host_gets_busy_while_a_job_runs(agent, tmp_path):
    results = {}
    sigs = [{**BLOCK, "cout": 8 * (i + 1)} for i in range(24)]  # each timed for >= 0.5 s: a 15 s job

    def first_host():
        lines = []
        body = {**_job([{"kind": "block", "signature": s} for s in sigs]), "protocol": {"min_run_s": 0.5}}
        with httpx.stream("POST", f"{agent['url']}/v1/jobs", json=body, headers=_auth(), timeout=None) as response:
            results["status"] = response.status_code
            lines = [json.loads(x) for x in response.iter_lines() if x.strip()]
        results["lines"] = lines

    thread = threading.Thread(target=first_host)
    thread.start()
    deadline = time.monotonic() + 60
    while not httpx.get(f"{agent['url']}/v1/info", headers=_auth()).json()["busy"]:
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.05)
    second = run_cli(
        "profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--remote", agent["url"],
        "--token", TOKEN, "--devices-dir", DEVICES, "--out", str(tmp_path / "never-written.parquet"), check=False,
    )  # fmt: skip
    thread.join(timeout=300)
    assert "busy" in one_error_line(second)
    assert not (tmp_path / "never-written.parquet").exists()
    assert results["status"] == 200
    timings = [line for line in results["lines"] if "timing" in line]
    assert [t["index"] for t in timings] == list(range(24)) and results["lines"][-1]["done"] is True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without a token"),
        (["--token", "short"], "at least 16 characters"),
        (["--token-file", "/nonexistent/token"], "cannot read --token-file"),
    ],
)
def test_unsafe_agent_starts_are_refused(args, message):
    env = {k: v for k, v in os.environ.items() if k != "HWNAS_AGENT_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas.cli", "agent", *args, "--devices-dir", DEVICES],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert message in one_error_line(proc)


def test_the_wire_protocol_is_the_measurement_protocol():
    """Every field of `Protocol` crosses the wire with the same default: a host's protocol is never
    refused by the agent's schema, nor filled in with other values (issue 33 added `robust_cv`)."""
    import typing

    from hwnas.hardware.agent.wire import schemas
    from hwnas.hardware.backends import Protocol

    wire = next(a for a in typing.get_args(schemas().model_fields["protocol"].annotation) if a is not type(None))
    assert wire().model_dump() == Protocol().to_dict()


@pytest.mark.slow
def test_several_devices_profile_at_once_each_on_its_agent(tmp_path, monkeypatch):
    """Two agents on loopback, `cpu` on one and `cpu-torch` on the other: both tables are built in
    the same call, concurrently (each device's progress moves while the other's does), and each is
    a table of its own device that a later call resumes on its own."""
    from hwnas.hardware.profiling import profile_devices
    from hwnas.hardware.table import LatencyTable

    ports = [free_port(), free_port()]
    agents = [start_agent(port) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    seen: dict[str, list[float]] = {"cpu": [], "cpu-torch": []}
    monkeypatch.chdir(tmp_path)
    try:
        rows = profile_devices(
            ["cpu", "cpu-torch"], urls, "mini", token=TOKEN, devices_dir=DEVICES, resolutions=["32x32"], rounds=1,
            validate=False, progress_for=lambda d: lambda done, total, label: seen[d].append(time.monotonic()),
        )  # fmt: skip
        again = profile_devices(["cpu", "cpu-torch"], urls, "mini", token=TOKEN, devices_dir=DEVICES,
                                resolutions=["32x32"], rounds=1, validate=False)  # fmt: skip
    finally:
        for proc in agents:
            proc.kill()
            proc.wait()
    assert [r.error for r in rows] == [None, None]
    mini = SearchSpace.load("mini")
    for row, name, url in zip(rows, ("cpu", "cpu-torch"), urls, strict=True):
        table = LatencyTable.load(tmp_path / "lut" / f"{name}-mini.parquet", mini)
        assert table.meta["device"]["name"] == name and table.meta["measured_by"] == url
        assert row.profile.measured == len(table) > 100
    first, second = seen["cpu"], seen["cpu-torch"]
    assert first[0] < second[-1] and second[0] < first[-1]  # each moved while the other was under way
    assert [r.profile.measured for r in again] == [0, 0]  # each resumes its own table: nothing left to do


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--remote", "http://127.0.0.1:9"], "2 --device(s) need as many --remote agents"),
        (["--remote", "http://127.0.0.1:9", "--remote", "http://127.0.0.1:9"], "each --remote once"),
        (["--remote", "http://127.0.0.1:9", "--remote", "http://127.0.0.1:8", "--out", "t.parquet"], "--out names one"),
    ],
)
def test_several_devices_are_checked_before_anything_is_measured(tmp_path, extra, message):
    args = ["profile", "--device", "cpu", "--device", "cpu-torch", "--space", "mini", "--devices-dir", DEVICES]
    assert message in one_error_line(run_cli(*args, *extra, check=False, cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []
