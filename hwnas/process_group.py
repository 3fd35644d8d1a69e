"""The process group `torchrun` starts, as every verb that spreads work over processes joins it
(`train supernet` and `train selfkd` with DDP, `search` and its sharded evaluation): the backend,
each process's device, and (rank, world size).

Multi-node runs use torchrun's rendezvous; nothing here depends on the number of hosts.
"""

from __future__ import annotations

import os
import sys

from hwnas.errors import HwnasError


def dist_backend(device: str, local_world: int, gpus: int) -> str:
    """The process-group backend: NCCL when every process on this host has a GPU of its own, gloo
    on a CPU and when processes share a GPU (NCCL refuses two ranks on one device; gloo reduces
    CUDA tensors through the host)."""
    return "nccl" if device.startswith("cuda") and 0 < local_world <= gpus else "gloo"


def rank_device(device: str, local_rank: int, gpus: int) -> str:
    """The device one process works on: `cuda` becomes `cuda:LOCAL_RANK` (modulo the GPUs, so
    processes may share one); an explicit `cuda:N` or `cpu` stays."""
    return f"cuda:{local_rank % max(gpus, 1)}" if device == "cuda" else device


def init_distributed(device: str = "cpu") -> tuple[int, int, str]:
    """Join the process group `torchrun` describes (`dist_backend`); (rank, world size, this
    process's device `rank_device`). Outside torchrun: (0, 1, device)."""
    import torch
    import torch.distributed as dist

    world, local_rank, local_world = _launch()
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    mine = rank_device(device, local_rank, gpus) if world > 1 else device
    if world > 1 and mine.startswith("cuda"):
        torch.cuda.set_device(torch.device(mine))  # NCCL and object collectives use the current device
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=dist_backend(device, local_world, gpus))
    return (*rank_world(), mine)


def _launch() -> tuple[int, int, int]:
    """(world size, local rank, local world size) as torchrun's environment gives them, checked: a
    launch whose numbers do not fit together (a rank past the world size, more processes on this
    host than in the world) is one `HwnasError` before any process group is joined."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    given = {name: os.environ.get(name) for name in names}
    try:
        world = int(given["WORLD_SIZE"] or 1)
        rank, local_rank = int(given["RANK"] or 0), int(given["LOCAL_RANK"] or 0)
        local_world = int(given["LOCAL_WORLD_SIZE"] or world)
    except ValueError:
        raise HwnasError(f"torchrun's environment is not whole numbers: {given}") from None
    if not (world >= 1 and 0 <= rank < world and 0 <= local_rank < local_world <= world):
        shown = ", ".join(f"{k}={v}" for k, v in given.items() if v is not None)
        raise HwnasError(
            f"torchrun's environment does not fit together ({shown}): each RANK below WORLD_SIZE, "
            "LOCAL_RANK below LOCAL_WORLD_SIZE, no more processes on a host than in the world"
        )
    return world, local_rank, local_world


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the process group this process is in; (0, 1) outside one."""
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def leave() -> None:
    """Leave the process group this process joined, if any: gloo's threads then stop before the
    interpreter does (a rank left to exit with the group alive can abort at exit with "terminate
    called without an active exception", failing a run whose work was done). Imports nothing: a
    verb that never loaded torch.distributed never joined a group."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
