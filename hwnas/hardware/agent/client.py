"""The host's side of `hwnas agent`: `RemoteMeasurer`, a `Measurer` over HTTP (httpx)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import numpy as np

from hwnas.hardware.agent.wire import DEFAULT_PORT, MAX_ITEMS, TOKEN_ENV, AgentError
from hwnas.hardware.backends import Protocol, Timing
from hwnas.hardware.device import Device
from hwnas.hardware.measurer import LocalMeasurer, Measurer, Progress, no_progress, round_figure
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BlockSignature


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
            per_round[index // len(archs), index % len(archs)] = round_figure(timing, statistic)
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


def measurer_for(device: Device, remote: str | None = None, token: str | None = None) -> Measurer:
    """Where the timings come from: this host, or `hwnas agent` at the URL `remote` (its token from
    `token` or $HWNAS_AGENT_TOKEN)."""
    if remote is None:
        return LocalMeasurer(device)
    return RemoteMeasurer(remote, token=token or os.environ.get(TOKEN_ENV), device=device)
