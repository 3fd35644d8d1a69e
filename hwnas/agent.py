"""`hwnas agent`: a small HTTP server on the device; `RemoteMeasurer`: the host's side of it.

The pattern of TVM's RPC server and Qualcomm AI Hub's profile jobs: the host sends work, the device
measures with its own backend and the shared protocol, rows stream back. Only JSON crosses the
wire: block signatures, archs of a search space (its TOML text), and timings; no pickles, no code,
no model files. Every request is schema-validated (pydantic) with bounded sizes, a token is
required (`Authorization: Bearer`, constant-time compare), the server binds to loopback unless
told otherwise, and it runs one job at a time: a second gets 409 "busy".

    POST /v1/jobs   {"device", "task", "num_classes"?, "space_toml"?, "protocol"?, "items": [...]}  -> NDJSON lines
    GET  /v1/info   the agent's host, hwnas version and its devices (available here or why not)

A job's lines are `{"index": i, "timing": {...}}` per item, then `{"done": true, "host", "versions"}`,
or `{"error": "..."}` if measuring failed. The host retries a dropped connection with the items not
yet answered, so a table build survives the agent being restarted.
"""

# No `from __future__ import annotations` here: FastAPI reads the route's annotations at runtime,
# and the request model is a class local to `create_app`.
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Literal

import numpy as np

from hwnas.backends import Protocol, Timing, get_backend
from hwnas.devices import Device, device_names, load_device
from hwnas.errors import HwnasError
from hwnas.measurer import OVERHEAD_SHAPE, Measurer, Progress, no_progress
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import ACTIVATIONS, OPS, BlockSignature

DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1 << 20
MAX_ITEMS = 4096
TASK_PATTERN = r"^(saliency(/noblur)?|classification|sod(/(cfem|unet))?(\+focus)?|segmentation(\+aux)?)$"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TOKEN_ENV = "HWNAS_AGENT_TOKEN"


class AgentError(HwnasError):
    """The agent refused a request, is unreachable or busy, or was started unsafely."""


# ---- the wire format -------------------------------------------------------------------------
def _schemas():
    """pydantic models of a job (built lazily: pydantic comes with the `agent` extra)."""
    from pydantic import BaseModel, ConfigDict, Field

    Dim = Annotated[int, Field(ge=1, le=4096)]
    Channels = Annotated[int, Field(ge=1, le=8192)]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

    class Signature(Strict):
        op: Literal[OPS]  # type: ignore[valid-type]
        h: Dim
        w: Dim
        cin: Channels
        cout: Channels
        kernel: Annotated[int, Field(ge=1, le=11)] = 1
        stride: Annotated[int, Field(ge=1, le=4)] = 1
        expansion: Annotated[int, Field(ge=1, le=16)] = 1
        se: bool = False
        act: Literal[ACTIVATIONS] = "relu"  # type: ignore[valid-type]
        skip: Annotated[int, Field(ge=0, le=8192)] = 0
        out_h: Annotated[int, Field(ge=0, le=4096)] = 0
        out_w: Annotated[int, Field(ge=0, le=4096)] = 0

    class Item(Strict):
        kind: Literal["block", "arch", "overhead"]
        signature: Signature | None = None
        arch: dict | None = None

    class ProtocolIn(Strict):
        warmup_min_calls: Annotated[int, Field(ge=1, le=1000)] = 5
        warmup_min_s: Annotated[float, Field(ge=0, le=10)] = 0.05
        warmup_max_s: Annotated[float, Field(ge=0, le=30)] = 1.0
        window: Annotated[int, Field(ge=1, le=100)] = 5
        stable_tol: Annotated[float, Field(gt=0, le=1)] = 0.05
        runs: Annotated[int, Field(ge=1, le=10000)] = 15
        min_run_s: Annotated[float, Field(ge=0, le=30)] = 0.05
        cv_threshold: Annotated[float, Field(gt=0, le=10)] = 0.10
        retries: Annotated[int, Field(ge=0, le=5)] = 1

    class Job(Strict):
        device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
        task: Annotated[str, Field(pattern=TASK_PATTERN)] = "saliency"
        num_classes: Annotated[int, Field(ge=1, le=100_000)] = 1000
        space_toml: Annotated[str, Field(max_length=200_000)] | None = None
        protocol: ProtocolIn | None = None
        items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]

    return Job


# ---- the server ------------------------------------------------------------------------------
class _Work:
    """One job's measurements on this device, converted models cached by signature or arch."""

    def __init__(self, job, devices_dir):
        self.device = load_device(job.device, devices_dir)
        self.device.require_available()
        self.backend = get_backend(self.device)
        self.protocol = Protocol(**job.protocol.model_dump()) if job.protocol else Protocol()
        self.task, self.num_classes = job.task, job.num_classes
        self.space = SearchSpace.from_toml(job.space_toml, source="the job's space") if job.space_toml else None
        self.cache: dict[str, object] = {}

    def parse(self, item):
        """(cache key, a function converting the model) for one item; raises on a bad item."""
        from hwnas.nn.factory import create
        from hwnas.nn.static import IdentityModel, SignatureModel, signature_inputs

        batch, backend = self.device.batch, self.backend
        if item.kind == "overhead":
            return "overhead", lambda: backend.prepare(IdentityModel(), [(batch, *OVERHEAD_SHAPE)])
        if item.kind == "block":
            if item.signature is None:
                raise AgentError("a 'block' item needs a 'signature'")
            sig = BlockSignature(**item.signature.model_dump())
            return sig.key, lambda: backend.prepare(SignatureModel(sig).eval(), signature_inputs(sig, batch))
        if self.space is None or item.arch is None:
            raise AgentError("an 'arch' item needs the job's 'space_toml' and the item's 'arch'")
        arch = self.space.arch_from_dict(item.arch)
        w, h = arch.resolution
        build = lambda: create(self.space, arch=arch, task=self.task, num_classes=self.num_classes).eval()  # noqa: E731
        return str(arch), lambda: backend.prepare(build(), [(batch, 3, h, w)])

    def measure(self, parsed) -> Timing:
        key, prepare = parsed
        if key not in self.cache:
            self.cache[key] = prepare()
        return self.backend.load(self.cache[key]).measure(self.protocol)

    def summary(self) -> dict:
        from hwnas.lut import host_info

        return {"host": host_info(), "versions": self.backend.versions(), "device": self.device.options()}


def create_app(*, token: str, devices_dir=None):
    """The agent's FastAPI app (token required on every route; one job at a time)."""
    from fastapi import Depends, FastAPI, Header, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    Job = _schemas()
    busy = threading.Lock()
    app = FastAPI(title="hwnas agent", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def bounded_body(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "send a Content-Length header"}, status_code=411)
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    def authorised(authorization: str | None = Header(default=None)) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong token (Authorization: Bearer <token>)")

    @app.get("/v1/info", dependencies=[Depends(authorised)])
    def info() -> dict:
        from hwnas import __version__
        from hwnas.lut import host_info

        devices = {}
        for name in device_names(devices_dir):
            reason = load_device(name, devices_dir).availability()
            devices[name] = {"available": reason is None, "reason": reason}
        return {"hwnas": __version__, "host": host_info(), "busy": busy.locked(), "devices": devices}

    @app.post("/v1/jobs", dependencies=[Depends(authorised)])
    def jobs(job: Job) -> StreamingResponse:  # type: ignore[valid-type]
        if not busy.acquire(blocking=False):
            raise HTTPException(status_code=409, detail="busy: another job is being measured; try again later")
        try:
            work = _Work(job, devices_dir)
            parsed = [work.parse(item) for item in job.items]
        except HwnasError as exc:
            busy.release()
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return StreamingResponse(_stream(work, parsed, busy), media_type="application/x-ndjson")

    return app


def _stream(work: _Work, parsed: list, busy: threading.Lock) -> Iterator[bytes]:
    try:
        for index, item in enumerate(parsed):
            try:
                timing = work.measure(item)
            except Exception as exc:  # a converter or runtime failing on this item: tell the host, stop
                yield _line({"error": f"item {index}: {type(exc).__name__}: {str(exc)[:300]}"})
                return
            yield _line({"index": index, "timing": timing.to_dict()})
        yield _line({"done": True, **work.summary()})
    finally:
        busy.release()


def _line(data: dict) -> bytes:
    return (json.dumps(data) + "\n").encode()


def resolve_token(token: str | None, token_file: str | None, host: str) -> tuple[str, bool]:
    """The agent's token and whether it was generated; refuses a non-loopback bind without one."""
    if token and token_file:
        raise AgentError("give --token or --token-file, not both")
    if token_file:
        try:
            token = open(token_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise AgentError(f"cannot read --token-file {token_file} ({exc.strerror or exc})") from None
        if not token:
            raise AgentError(f"--token-file {token_file} is empty")
    if token:
        if len(token) < 16:
            raise AgentError("the agent token must be at least 16 characters")
        return token, False
    if host not in LOOPBACK:
        raise AgentError(f"refusing to listen on {host} without a token: pass --token or --token-file")
    return secrets.token_urlsafe(24), True


def serve(*, host: str, port: int, token: str, devices_dir=None) -> None:
    import uvicorn

    uvicorn.run(create_app(token=token, devices_dir=devices_dir), host=host, port=port, log_level="warning")


# ---- the host's side ---------------------------------------------------------------------------
class RemoteMeasurer(Measurer):
    """Measures on an agent: same interface as `LocalMeasurer`, over HTTP.

    A dropped connection (the agent restarted, the network blinked) is retried with the items not
    yet answered, waiting up to `retry_s` for the agent to come back; "busy" and refusals are errors.
    """

    def __init__(self, url: str, *, token: str | None, device: Device, retry_s: float = 120.0):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise AgentError(f"--remote must be an http(s) URL like http://host:{DEFAULT_PORT}, got '{url}'")
        if not token:
            raise AgentError(f"--remote needs the agent's token: pass --token or set {TOKEN_ENV}")
        self.where, self.device, self.retry_s = url.rstrip("/"), device, retry_s
        self.client = httpx.Client(base_url=self.where, headers={"Authorization": f"Bearer {token}"}, timeout=None)
        self._summary: dict | None = None
        self._remote_info = self._get_info()
        remote = self._remote_info["devices"].get(device.name)
        if remote is None:
            raise AgentError(f"the agent at {self.where} has no device spec '{device.name}'")
        if not remote["available"]:
            raise AgentError(f"device '{device.name}' cannot run on the agent at {self.where}: {remote['reason']}")

    def _get_info(self) -> dict:
        import httpx

        try:
            response = self.client.get("/v1/info")
        except httpx.TransportError as exc:
            raise AgentError(f"cannot reach the agent at {self.where} ({exc})") from None
        return _checked(response, self.where).json()

    def host(self) -> dict:
        return self._remote_info["host"] | {"agent": self.where}

    def versions(self) -> dict:
        if self._summary is None:
            self._run([{"kind": "overhead"}], None)
        return self._summary["versions"]

    def overhead(self, protocol: Protocol) -> Timing:
        return self._run([{"kind": "overhead"}], protocol)[0]

    def blocks(self, sigs: list[BlockSignature], protocol: Protocol) -> Iterator[tuple[BlockSignature, Timing]]:
        for start in range(0, len(sigs), MAX_ITEMS):
            chunk = sigs[start : start + MAX_ITEMS]
            items = [{"kind": "block", "signature": s.to_dict()} for s in chunk]
            for index, timing in self._stream(items, protocol):
                yield chunk[index], timing

    def archs(
        self,
        space: SearchSpace,
        archs: list[Arch],
        task: str,
        *,
        num_classes: int = 1000,
        rounds: int,
        statistic: str,
        protocol: Protocol,
        progress: Progress = no_progress,
    ) -> np.ndarray:
        items = [{"kind": "arch", "arch": space.arch_to_dict(a)} for _ in range(rounds) for a in archs]
        per_round = np.zeros((rounds, len(archs)))
        done = 0
        for index, timing in self._stream(items, protocol, space=space, task=task, num_classes=num_classes):
            per_round[index // len(archs), index % len(archs)] = getattr(timing, f"{statistic}_ms")
            done += 1
            progress(done, len(items), f"round {index // len(archs) + 1}/{rounds}")
        return per_round

    def _run(self, items: list[dict], protocol: Protocol | None) -> list[Timing]:
        return [timing for _, timing in sorted(self._stream(items, protocol), key=lambda pair: pair[0])]

    def _stream(
        self,
        items: list[dict],
        protocol: Protocol | None,
        *,
        space: SearchSpace | None = None,
        task: str = "saliency",
        num_classes: int = 1000,
    ) -> Iterator[tuple[int, Timing]]:
        """(index, Timing) for every item, in order, retrying a dropped connection with the rest."""
        import httpx

        pending = list(range(len(items)))
        deadline = None
        while pending:
            job = {
                "device": self.device.name,
                "task": task,
                "num_classes": num_classes,
                "items": [items[i] for i in pending],
                **({"protocol": protocol.to_dict()} if protocol else {}),
                **({"space_toml": space.toml} if space is not None else {}),
            }
            answered, problem = 0, None
            try:
                for line in self._lines(job):
                    if "error" in line:
                        raise AgentError(f"the agent at {self.where} failed: {line['error']}")
                    if line.get("done"):
                        self._summary = line
                        continue
                    yield pending[line["index"]], Timing(**line["timing"])
                    answered, deadline = line["index"] + 1, None
                if answered < len(pending):
                    problem = "the job's stream ended early"
            except (httpx.TransportError, json.JSONDecodeError) as exc:
                problem = str(exc) or type(exc).__name__
            pending = pending[answered:]
            if problem is None:
                continue
            deadline = deadline or time.monotonic() + self.retry_s
            if time.monotonic() > deadline:
                raise AgentError(
                    f"lost the agent at {self.where} ({problem}) and it did not come back within "
                    f"{self.retry_s:.0f} s; rerun the same command to resume"
                )
            time.sleep(1.0)

    def _lines(self, job: dict) -> Iterator[dict]:
        with self.client.stream("POST", "/v1/jobs", json=job) as response:
            if response.status_code != 200:
                response.read()
                _checked(response, self.where)
            for raw in response.iter_lines():
                if raw.strip():
                    yield json.loads(raw)


def _checked(response, where: str):
    """The response if 2xx; else one `AgentError` with the agent's own message."""
    if response.status_code < 300:
        return response
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):  # pydantic validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail[:3])
    raise AgentError(f"the agent at {where} answered {response.status_code}: {detail}")
