"""Datasets written to disk once: the ``df.csv`` plus a parameters file that says what made it.

Dataset makers call :func:`reuse` first (a folder made with the same parameters and holding all
its files is read back, not regenerated) and :func:`finish` last (the dataframe and the
parameters are written only after every image is on disk, so a half-written folder is never
taken for a finished one).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

CSV = "df.csv"


def reuse(root: Path, meta_name: str, params: dict, n_rows: int | None = None) -> pd.DataFrame | None:
    """The dataframe of a finished folder made with ``params`` (and ``n_rows`` rows), else None."""
    try:
        if json.loads((root / meta_name).read_text()) != params:
            return None
        df = pd.read_csv(root / CSV)
    except (OSError, ValueError):
        return None
    if len(df) == 0 or (n_rows is not None and len(df) != n_rows):
        return None
    if not all((root / p).is_file() for p in df["path"].tolist()):
        return None
    df.attrs["dataset_root"] = str(root)
    return df


def finish(root: Path, meta_name: str, params: dict, rows: list[dict]) -> pd.DataFrame:
    """Write ``df.csv`` and the parameters file; return the dataframe with its ``dataset_root``."""
    df = pd.DataFrame(rows)
    df.to_csv(root / CSV, index=False)
    (root / meta_name).write_text(json.dumps(params))
    df.attrs["dataset_root"] = str(root)
    return df
