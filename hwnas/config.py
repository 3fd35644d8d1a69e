"""Reading human-written TOML specs (search spaces, devices) with errors that name the file."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from hwnas.errors import HwnasError

NAME_PATTERN = r"[A-Za-z0-9_.-]+"


def load_toml(text: str, *, source: str, allowed: set[str], error: type[HwnasError]) -> dict[str, Any]:
    """Parse `text` and refuse unknown top-level fields; errors are `error` naming `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML ({exc})") from None
    unknown = set(data) - allowed
    if unknown:
        raise error(f"{source}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return data


def check_name(value: Any, *, source: str, error: type[HwnasError]) -> str:
    """A spec's `name`: one word of letters, digits, `_`, `.` and `-` (it becomes part of file names)."""
    if not isinstance(value, str) or not re.fullmatch(NAME_PATTERN, value):
        raise error(f"{source}: field 'name' must be a word of letters, digits, _ . -, got {value!r}")
    return value
