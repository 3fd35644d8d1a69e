"""hwnas: hardware-aware latency profiling, multi-objective NAS and verified export.

The public API is small; everything else lives in one module per noun (see docs/architecture.md).
"""

from hwnas.errors import ArchError, CheckpointError, HwnasError, SpaceError
from hwnas.space import Arch, SearchSpace, StageArch
from hwnas.space.signature import BlockSignature

__all__ = [
    "Arch",
    "ArchError",
    "BlockSignature",
    "CheckpointError",
    "HwnasError",
    "SearchSpace",
    "SpaceError",
    "StageArch",
    "export",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`hwnas.export(...)` without importing torch and the converters at `import hwnas`."""
    if name == "export":
        from hwnas.deploy.export import export

        return export
    raise AttributeError(f"module 'hwnas' has no attribute '{name}'")
