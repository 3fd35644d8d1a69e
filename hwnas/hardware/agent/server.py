"""The device's side of `hwnas agent`: a FastAPI app that measures jobs with the device's own
backend and the shared protocol, streaming rows back (NDJSON). Every request is schema-validated
(`hwnas.hardware.agent.wire`) with bounded sizes, a token is required (`Authorization: Bearer`,
constant-time compare), the server binds to loopback unless told otherwise, and it runs one job at a
time: a second gets 409 "busy".
"""

# No `from __future__ import annotations` here: FastAPI reads the route's annotations at runtime,
# and the request model is a class local to `create_app`.
import hmac
import json
import secrets
import threading
from collections.abc import Iterator
from importlib.metadata import version

from hwnas.errors import HwnasError
from hwnas.hardware.agent.wire import LOOPBACK, MAX_BODY_BYTES, AgentError, schemas
from hwnas.hardware.backends import Protocol, Timing, get_backend
from hwnas.hardware.device import device_names, load_device
from hwnas.hardware.measurer import OVERHEAD_SHAPE
from hwnas.space import SearchSpace
from hwnas.space.signature import BlockSignature


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
        from hwnas.hardware.table import host_info

        return {"host": host_info(), "versions": self.backend.versions(), "device": self.device.options()}


def create_app(*, token: str, devices_dir=None):
    """The agent's FastAPI app (token required on every route; one job at a time)."""
    from fastapi import Depends, FastAPI, Header, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    Job = schemas()
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
        from hwnas.hardware.table import host_info

        devices = {}
        for name in device_names(devices_dir):
            reason = load_device(name, devices_dir).availability()
            devices[name] = {"available": reason is None, "reason": reason}
        return {"hwnas": version("hwnas"), "host": host_info(), "busy": busy.locked(), "devices": devices}

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
