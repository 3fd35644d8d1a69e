"""What crosses the wire between a host and `hwnas agent`: the job schema (pydantic, built lazily:
it comes with the `agent` extra), its bounds, and the agent's error. Only JSON: block signatures,
archs of a search space (its TOML text) and timings; no pickles, no code, no model files."""

from __future__ import annotations

from typing import Annotated, Literal

from hwnas.errors import HwnasError
from hwnas.space.signature import ACTIVATIONS, OPS

DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1 << 20
MAX_ITEMS = 4096
TASK_PATTERN = r"^(saliency(/noblur)?|classification|sod(/(cfem|unet))?(\+focus)?|segmentation(\+aux)?)$"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TOKEN_ENV = "HWNAS_AGENT_TOKEN"


class AgentError(HwnasError):
    """The agent refused a request, is unreachable or busy, or was started unsafely."""


def schemas():
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

    class ProtocolIn(Strict):  # `Protocol`'s fields with bounds; a test holds the defaults equal to its
        warmup_min_calls: Annotated[int, Field(ge=1, le=1000)] = 5
        warmup_min_s: Annotated[float, Field(ge=0, le=10)] = 0.025
        warmup_max_s: Annotated[float, Field(ge=0, le=30)] = 1.0
        window: Annotated[int, Field(ge=1, le=100)] = 5
        stable_tol: Annotated[float, Field(gt=0, le=1)] = 0.05
        runs: Annotated[int, Field(ge=1, le=10000)] = 15
        min_run_s: Annotated[float, Field(ge=0, le=30)] = 0.025
        cv_threshold: Annotated[float, Field(gt=0, le=10)] = 0.10
        retries: Annotated[int, Field(ge=0, le=5)] = 1
        robust_cv: bool = True

    class Job(Strict):
        device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
        task: Annotated[str, Field(pattern=TASK_PATTERN)] = "saliency"
        num_classes: Annotated[int, Field(ge=1, le=100_000)] = 1000
        space_toml: Annotated[str, Field(max_length=200_000)] | None = None
        protocol: ProtocolIn | None = None
        items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]

    return Job
