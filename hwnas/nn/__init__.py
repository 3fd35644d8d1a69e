"""Models: dynamic (weight-sharing) and static blocks, task heads, the supernet and its subnets.

`create` builds every model (`hwnas.nn.factory`); `load` reads every hwnas checkpoint and
`Checkpoint.model()` rebuilds its model (`hwnas.nn.checkpoint`); the authors' checkpoints are read
and converted by `hwnas.nn.authors`.
"""

from hwnas.nn.checkpoint import Checkpoint, load
from hwnas.nn.factory import create
from hwnas.nn.supernet import SubNet, Supernet

__all__ = ["Checkpoint", "SubNet", "Supernet", "create", "load"]
