"""Supernet evaluations spread over the processes `torchrun` starts, one per GPU or CPU share.

Rank 0 runs the searcher. Each batch of archs its problem asks to score (a generation's candidates)
is broadcast; every rank scores its share, rows `rank::world`, with its own `SupernetEvaluator` on its
own device; the scores are gathered back, in order, into every rank's cache. A score depends on the
arch alone (the subnet's BN statistics re-estimated on the same training batches, in a forked RNG),
so the archive is the one a single process writes with the same seed. The field spreads candidate
evaluation the same way: Archai over Ray tasks, SalNAS and MODNAS under `torch.distributed`.
"""

from __future__ import annotations

import numpy as np

from hwnas.space import Arch


class ShardedEvaluator:
    """Rank 0's evaluator: `local`'s interface (`many`, `__call__`, `metric`, `source`, ...), its
    uncached rows scored by all `world` ranks. `close()` releases the other ranks (`serve`)."""

    def __init__(self, local, *, world: int):
        self.local, self.world = local, world

    def __getattr__(self, name: str):
        return getattr(self.local, name)

    def many(self, x: np.ndarray) -> np.ndarray:
        rows = np.asarray(x, dtype=np.int64)
        space, cache = self.local.space, self.local.cache
        todo = {str(space.decode(r)): r for r in rows if str(space.decode(r)) not in cache}
        if todo:
            _broadcast([r.tolist() for r in todo.values()])
            _share(self.local, np.array(list(todo.values())), rank=0, world=self.world)
        return np.array([cache[str(space.decode(r))] for r in rows])

    def __call__(self, arch: Arch) -> float:
        return float(self.many(self.local.space.encode(arch)[None])[0])

    def close(self) -> None:
        _broadcast(None)


def serve(local, *, rank: int, world: int) -> int:
    """A rank other than 0: score its share of each batch rank 0 sends until rank 0 closes; returns
    how many archs this rank scored."""
    scored = 0
    while (rows := _broadcast(None, receive=True)) is not None:
        scored += len(_share(local, np.asarray(rows, dtype=np.int64), rank=rank, world=world))
    return scored


def _broadcast(rows: list | None, *, receive: bool = False) -> list | None:
    import torch.distributed as dist

    box = [None if receive else rows]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _share(local, rows: np.ndarray, *, rank: int, world: int) -> dict[str, float]:
    """Score rows `rank::world` here, gather every rank's scores into `local.cache`; this rank's."""
    import torch.distributed as dist

    space = local.space
    mine = {str(space.decode(r)): local(space.decode(r)) for r in rows[rank::world]}
    gathered: list[dict[str, float] | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    for part in gathered:
        local.cache.update(part or {})
    return mine
