"""Variation of encoded archs, as once-for-all's evolution finder varies them (`evolution`).

Both work on integer vectors of a space's encoding (`SearchSpace.encode`), whose upper bounds
`xu` are `space.bounds()[1]`; the result is a vector of the same space (decode it to check).
"""

from __future__ import annotations

import numpy as np


def mutate(x: np.ndarray, xu: np.ndarray, rng: np.random.Generator, prob: float = 0.1) -> np.ndarray:
    """Each gene resampled uniformly with probability `prob` (once-for-all's mutation)."""
    return np.where(rng.random(len(xu)) < prob, rng.integers(0, xu + 1), x)


def crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform crossover: each gene from either parent with equal chance."""
    return np.where(rng.random(len(a)) < 0.5, a, b)
