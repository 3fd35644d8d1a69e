"""Search spaces: what a supernet can choose and what each choice costs, torch-free.

`SearchSpace` (TOML presets or files, an integer codec for searchers), `Arch` (one subnet, as JSON
or a line), `BlockSignature` (one block's shape: the key of latency tables, params and FLOPs), the
task names (`hwnas.space.tasks`) and NAS-Bench-201's tabular space (`hwnas.space.nb201`).
"""

from hwnas.space.arch import Arch, StageArch
from hwnas.space.search_space import DEFAULT_SPACE, SearchSpace
from hwnas.space.signature import BlockSignature

__all__ = ["DEFAULT_SPACE", "Arch", "BlockSignature", "SearchSpace", "StageArch"]
