"""hwnas: hardware-aware latency profiling, multi-objective NAS and verified export.

The public API is small; everything else lives in one module per noun (see docs/architecture.md).
"""

from hwnas.errors import ArchError, CheckpointError, HwnasError, SpaceError
from hwnas.signature import BlockSignature
from hwnas.space import Arch, SearchSpace, StageArch

__all__ = [
    "Arch",
    "ArchError",
    "BlockSignature",
    "CheckpointError",
    "HwnasError",
    "SearchSpace",
    "SpaceError",
    "StageArch",
]
__version__ = "0.1.0"
