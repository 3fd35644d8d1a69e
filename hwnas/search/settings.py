"""Each searcher's settings as a user reaches them (`hwnas search --set key=value`): the fields of
its `Searcher` dataclass, typed by their defaults, checked before any evaluation.

The papers' values and hwnas's defaults are listed side by side in README ("Search settings").
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from hwnas.search.budget import BudgetError


def settings(searcher: type) -> dict[str, Any]:
    """{setting: default} of a `Searcher` class (`hwnas.search.searchers.SEARCHERS.get(name)`): its
    fields but those set by flags of their own (`OWN_FLAG`)."""
    return {f.name: f.default for f in dataclasses.fields(searcher) if not f.metadata.get("own_flag")}


def choices(searcher: type) -> dict[str, tuple[str, ...]]:
    """{setting: allowed values} of the settings a searcher annotates as `Literal[...]`."""
    hints = typing.get_type_hints(searcher)
    return {k: typing.get_args(v) for k, v in hints.items() if typing.get_origin(v) is Literal}


def _typed(name: str, text: str, default: Any, algorithm: str, allowed: tuple[str, ...] = ()) -> Any:
    if allowed:
        if text not in allowed:
            raise BudgetError(f"--set {name}={text}: allowed {', '.join(allowed)}")
        return text
    kind = type(default) if default is not None else int  # a None default stands for "derived": an int
    try:
        value = kind(text) if kind is not bool else text.lower() in ("1", "true", "yes")
    except ValueError:
        raise BudgetError(f"--set {name}={text}: {algorithm}'s {name} is {kind.__name__}, like {default!r}") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
        raise BudgetError(f"--set {name}={text}: {name} must be positive")
    return value


def parse_settings(algorithm: str, searcher: type, pairs: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """`["surrogate_gens=100", ...]` (or a dict) -> typed settings of `searcher`; an unknown
    key, a malformed pair or a wrong type is one `BudgetError` naming what the algorithm accepts."""
    known, allowed = settings(searcher), choices(searcher)
    items = pairs.items() if isinstance(pairs, dict) else [_split(p) for p in pairs or []]
    out: dict[str, Any] = {}
    for key, value in items:
        if key not in known:
            allowed = ", ".join(f"{k} (default {v})" for k, v in known.items()) or "none"
            raise BudgetError(f"--set {key}: {algorithm} has no setting '{key}'; its settings: {allowed}")
        if isinstance(value, str) or key in allowed:
            out[key] = _typed(key, str(value), known[key], algorithm, allowed.get(key, ()))
        else:
            out[key] = value
    return out


def _split(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise BudgetError(f"--set takes key=value, got '{pair}'")
    return key.strip(), value.strip()
