"""Helpers shared by the benchmarks: the machine line every benchmark prints."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
            cpu = names[0] if names else cpu
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )


def save(path: Path, data: dict) -> Path:
    """Write a benchmark's result as JSON with what the results page shows beside it: the machine,
    the command that produced it and when (`tools/docs_pages.py` renders bench/out/)."""
    command = " ".join(["python -m bench." + Path(sys.argv[0]).stem, *sys.argv[1:]])
    stamp = {"machine": machine(), "command": command, "date": time.strftime("%Y-%m-%d")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**data, **stamp}, indent=1))
    return path
