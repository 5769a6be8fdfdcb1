"""The local copy every logger keeps: metrics as CSV rows, figures as PNG files.

The CSV is long-format (``time,run,step,key,value``) and appended row by row with a flush,
so a crash or an unreachable tracker never loses what was logged before it.
"""
from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path
from typing import Any

__all__ = ["MetricsCSV", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_name(title: str) -> str:
    """A title like ``worst_queries/map/5`` as one file-name part: ``worst_queries_map_5``."""
    return _UNSAFE.sub("_", title).strip("_") or "figure"


class MetricsCSV:
    """Append-only CSV of logged scalars.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> MetricsCSV(p, run="r1").write({"loss": 0.5}, step=3)
        >>> p.read_text().splitlines()[1].split(",")[1:]
        ['r1', '3', 'loss', '0.5']
    """

    columns = ("time", "run", "step", "key", "value")

    def __init__(self, path: str | Path, run: str) -> None:
        self.path = Path(path)
        self.run = run

    def write(self, metrics: dict[str, Any], step: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        now = f"{time.time():.3f}"
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.columns)
            for key, value in metrics.items():
                value = float(value)
                w.writerow([now, self.run, "" if step is None else int(step), key,
                            "nan" if math.isnan(value) else repr(value)])
