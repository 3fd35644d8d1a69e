"""Errors a user can act on. The CLI turns any `HwnasError` into one red line and exit code 2."""

from __future__ import annotations


class HwnasError(Exception):
    """Base class: the message says what was wrong and what is allowed."""


class SpaceError(HwnasError):
    """A search-space preset or TOML file is unknown, malformed or inconsistent."""


class ArchError(HwnasError):
    """An architecture (JSON, string or vector) does not belong to its search space."""


class CheckpointError(HwnasError):
    """A supernet checkpoint is missing, corrupted or was built for another space."""
