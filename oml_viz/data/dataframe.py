"""The OML dataframe format: read, check and normalise it.

Required columns: ``label, path, split, is_query, is_gallery``; optional:
``category, sequence, x_1, x_2, y_1, y_2`` (extra columns are kept). ``path`` is
relative to ``dataset_root`` or absolute. A row whose four bbox cells are all
empty means the whole image. Validation rows (``split == "validation"``) need
``is_query``/``is_gallery`` as booleans; train rows may leave them empty.

Every problem names its row (the dataframe's index label) and column, and all
problems are gathered before anything is raised, so a user fixes a CSV in one go.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> Image.new("RGB", (8, 8)).save(f"{root}/a.png")
    >>> pd.DataFrame({"label": [0, 1], "path": ["a.png", "missing.png"], "split": "validation",
    ...               "is_query": True, "is_gallery": True}).to_csv(f"{root}/df.csv", index=False)
    >>> [str(p) for p in check_dataframe(pd.read_csv(f"{root}/df.csv"), root)]   # doctest: +ELLIPSIS
    ["row 1, column 'path': file not found: ...missing.png"]
    >>> read_dataframe(f"{root}/df.csv")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    oml_viz.data.dataframe.DataFrameError: invalid OML dataframe: 1 problem(s):
      row 1, column 'path': file not found: ...missing.png
"""
from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oml_viz.errors import InputFileNotFoundError, InputValueError

REQUIRED_COLUMNS = ("label", "path", "split", "is_query", "is_gallery")
BBOX_COLUMNS = ("x_1", "y_1", "x_2", "y_2")
OPTIONAL_COLUMNS = ("category", "sequence") + BBOX_COLUMNS
SPLITS = ("train", "validation")

_TRUE = {"true", "1", "1.0", "yes", "t", "y"}
_FALSE = {"false", "0", "0.0", "no", "f", "n"}

# Shown in an error message; the full list is on the exception.
_MAX_LISTED = 20
# Checking files is the slow part (a stat and a header read each): show progress from here on.
_PROGRESS_ROWS = 5000


@dataclass(frozen=True)
class Problem:
    """One problem in a dataframe: which row (index label), which column, what."""

    row: Hashable | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row!r}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class DataFrameError(InputValueError):
    """Raised by :func:`validate_dataframe`; ``.problems`` lists every :class:`Problem`."""

    def __init__(self, problems: Sequence[Problem], what: str = "dataframe"):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:_MAX_LISTED]]
        more = len(self.problems) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__(f"invalid OML {what}: {len(self.problems)} problem(s):\n  " + "\n  ".join(lines))


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _to_bool(value: object) -> bool | None:
    """True/False for bool-like cells (bools, 0/1, 'True'/'false'...), None otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, (float, np.floating)) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


def _to_number(value: object) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def resolve_path(path: str | os.PathLike, dataset_root: str | os.PathLike | None) -> Path:
    """``path`` as is when absolute, else joined to ``dataset_root`` (cwd when None)."""
    p = Path(path).expanduser()
    if p.is_absolute() or dataset_root is None:
        return p
    return Path(dataset_root).expanduser() / p


def row_bbox(row: pd.Series | dict) -> tuple[int, int, int, int] | None:
    """The (x_1, y_1, x_2, y_2) box of a row, or None when absent (= whole image)."""
    values = [row.get(c) if hasattr(row, "get") else None for c in BBOX_COLUMNS]
    if all(_is_empty(v) for v in values):
        return None
    nums = [_to_number(v) for v in values]
    if any(n is None for n in nums):
        raise ValueError(f"bbox {values} is partly empty or not numeric")
    x1, y1, x2, y2 = (round(n) for n in nums)  # type: ignore[arg-type]
    return x1, y1, x2, y2


def _check_columns(df: pd.DataFrame) -> list[Problem]:
    problems = [Problem(None, c, "required column is missing") for c in REQUIRED_COLUMNS if c not in df.columns]
    present = [c for c in BBOX_COLUMNS if c in df.columns]
    if present and len(present) != len(BBOX_COLUMNS):
        missing = [c for c in BBOX_COLUMNS if c not in df.columns]
        problems.append(Problem(None, ",".join(missing), f"bbox columns must come as all four of {BBOX_COLUMNS}"))
    if len(df) == 0:
        problems.append(Problem(None, None, "the dataframe has no rows (a header alone is no dataset)"))
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()].unique()[:5].tolist()
        problems.append(Problem(None, None, f"the index has duplicate labels (e.g. {dup}): rows cannot be named"))
    return problems


def _empty_mask(s: pd.Series) -> np.ndarray:
    """True where a cell is empty (None, NaN, blank string); vectorised for typed columns."""
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        return s.map(_is_empty).to_numpy(dtype=bool)
    return s.isna().to_numpy()


def _cells(df: pd.DataFrame, mask: np.ndarray, column: str, message) -> list[Problem]:
    """A problem for every row where ``mask`` holds; ``message(value)`` words it."""
    return [Problem(idx, column, message(v)) for idx, v in zip(df.index[mask], df[column].to_numpy()[mask])]


def _check_rows(df: pd.DataFrame) -> list[Problem]:
    # Column-wise masks first, Python only for the bad rows: 100k rows check in well under a second.
    problems: list[Problem] = []
    problems += _cells(df, _empty_mask(df["label"]), "label", lambda v: "is empty")
    bad_path = ~df["path"].map(lambda v: isinstance(v, (str, os.PathLike)) and not _is_empty(v)).to_numpy(dtype=bool)
    problems += _cells(df, bad_path, "path", lambda v: f"must be a non-empty string, got {v!r}")
    split = df["split"]
    problems += _cells(df, ~split.isin(SPLITS).to_numpy(), "split", lambda v: f"must be one of {SPLITS}, got {v!r}")
    is_val = (split == "validation").to_numpy()
    for col in ("is_query", "is_gallery"):
        s = df[col]
        empty = _empty_mask(s)
        problems += _cells(df, empty & is_val, col, lambda v: "is empty on a validation row (must be True or False)")
        if s.dtype != bool:
            not_bool = ~empty & s.map(lambda v: _to_bool(v) is None).to_numpy(dtype=bool)
            problems += _cells(df, not_bool, col, lambda v: f"must be True/False (or 1/0), got {v!r}")
    if "category" in df.columns:
        problems += _cells(df, _empty_mask(df["category"]), "category",
                           lambda v: "is empty (the column is present, so every row needs one)")
    if all(c in df.columns for c in BBOX_COLUMNS):
        problems += _check_bboxes(df)
    position = {idx: i for i, idx in enumerate(df.index)}
    return sorted(problems, key=lambda p: position[p.row])


def _check_bboxes(df: pd.DataFrame) -> list[Problem]:
    empty = np.stack([_empty_mask(df[c]) for c in BBOX_COLUMNS], 1)
    nums = np.stack([pd.to_numeric(df[c].where(~_empty_mask(df[c])), errors="coerce").to_numpy(dtype=np.float64)
                     if df[c].dtype != bool else np.full(len(df), np.nan) for c in BBOX_COLUMNS], 1)
    all_empty = empty.all(1)
    partly = empty.any(1) & ~all_empty
    problems: list[Problem] = []
    for i in np.flatnonzero(partly):
        cols = ",".join(c for c, e in zip(BBOX_COLUMNS, empty[i]) if e)
        problems.append(Problem(df.index[i], cols, "bbox is partly empty: give all four of x_1, y_1, x_2, y_2 or none"))
    full = ~empty.any(1)
    ok = full.copy()
    for j, c in enumerate(BBOX_COLUMNS):
        bad = full & ~np.isfinite(nums[:, j])
        problems += _cells(df, bad, c, lambda v: f"bbox coordinate must be a finite number, got {v!r}")
        neg = full & np.isfinite(nums[:, j]) & (nums[:, j] < 0)
        problems += _cells(df, neg, c, lambda v: f"bbox coordinate must be >= 0, got {v!r}")
        ok &= ~bad & ~neg
    x1, y1, x2, y2 = nums.T
    for lo, hi, a, b in ((x1, x2, "x_1", "x_2"), (y1, y2, "y_1", "y_2")):
        for i in np.flatnonzero(ok & (hi <= lo)):
            problems.append(Problem(df.index[i], f"{a},{b}",
                                    f"bbox needs {a} < {b}, got {df[a].iloc[i]!r} >= {df[b].iloc[i]!r}"))
    return problems


def _check_sets(df: pd.DataFrame) -> list[Problem]:
    """Whole-table checks: labels are consistent, the validation split can be retrieved on."""
    problems: list[Problem] = []
    if "label" in df.columns:
        kinds = {"number" if _to_number(v) is not None else type(v).__name__
                 for v in df["label"].tolist() if not _is_empty(v)}
        if len(kinds) > 1:
            problems.append(Problem(None, "label", f"mixes label kinds {sorted(kinds)}: use one kind"))
    if "category" in df.columns and "label" in df.columns:
        per_label = df.dropna(subset=["label", "category"]).groupby("label")["category"].nunique()
        for label in per_label[per_label > 1].index.tolist()[:_MAX_LISTED]:
            rows = df.index[df["label"] == label].tolist()[:5]
            problems.append(Problem(None, "category", f"label {label!r} has several categories (rows {rows}...)"))
    if {"split", "is_query", "is_gallery"} <= set(df.columns):
        val = df[df["split"] == "validation"]
        if len(val):
            q = val["is_query"].map(_to_bool)
            g = val["is_gallery"].map(_to_bool)
            if not (q == True).any():
                problems.append(Problem(None, "is_query", "the validation split has no query rows"))
            if not (g == True).any():
                problems.append(Problem(None, "is_gallery", "the validation split has no gallery rows"))
    return problems


def _check_files(
    df: pd.DataFrame, dataset_root: str | os.PathLike | None, decode: bool, progress: bool | None
) -> list[Problem]:
    from PIL import Image
    from tqdm.auto import tqdm

    problems: list[Problem] = []
    has_bbox = all(c in df.columns for c in BBOX_COLUMNS)
    show = len(df) >= _PROGRESS_ROWS if progress is None else progress
    rows = tqdm(zip(df.index, df.to_dict("records")), total=len(df), desc="checking image files",
                unit="file", disable=not show)
    for idx, row in rows:
        path = row.get("path")
        if _is_empty(path) or not isinstance(path, (str, os.PathLike)):
            continue  # already reported
        full = resolve_path(path, dataset_root)
        if not full.is_file():
            problems.append(Problem(idx, "path", f"file not found: {full}"))
            continue
        try:
            with Image.open(full) as im:
                size = im.size
                if decode:
                    im.load()
        except (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError) as e:
            problems.append(Problem(idx, "path", f"cannot read image {full}: {type(e).__name__}: {e}"))
            continue
        if has_bbox:
            try:
                box = row_bbox(row)
            except ValueError:
                continue  # already reported
            if box is not None and (box[2] > size[0] or box[3] > size[1]):
                problems.append(Problem(idx, "x_2,y_2", f"bbox {box} exceeds the image size {size[0]}x{size[1]}"))
    return problems


def check_dataframe(
    df: pd.DataFrame,
    dataset_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
    decode: bool = False,
    progress: bool | None = None,
) -> list[Problem]:
    """Every problem in an OML dataframe, as a list (empty when valid).

    Args:
        df: the dataframe.
        dataset_root: the folder relative paths start from; defaults to
            ``df.attrs["dataset_root"]`` (set by :func:`read_dataframe`), else the cwd.
        check_files: also check each file exists, opens as an image and holds its bbox.
        decode: decode each image fully (finds truncated files; slower).
        progress: show a progress bar over the files (default: from 5,000 rows).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if dataset_root is None:
        dataset_root = df.attrs.get("dataset_root")
    problems = _check_columns(df)
    if any(p.row is None and p.column in REQUIRED_COLUMNS for p in problems) or df.index.has_duplicates:
        return problems  # rows cannot be checked meaningfully
    problems += _check_rows(df)
    problems += _check_sets(df)
    if check_files:
        problems += _check_files(df, dataset_root, decode, progress)
    return problems


def normalize_dataframe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``is_query``/``is_gallery`` as bool (empty -> False) and bbox columns as float."""
    out = df.copy()
    for col in ("is_query", "is_gallery"):
        out[col] = [bool(_to_bool(v)) if not _is_empty(v) else False for v in out[col].tolist()]
        out[col] = out[col].astype(bool)
    if all(c in out.columns for c in BBOX_COLUMNS):
        for c in BBOX_COLUMNS:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    labels = out["label"]
    if labels.dtype.kind == "f" and labels.notna().all() and (labels % 1 == 0).all():
        out["label"] = labels.astype("int64")
    out.attrs = dict(df.attrs)
    return out


def validate_dataframe(
    df: pd.DataFrame,
    dataset_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
    decode: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Check an OML dataframe and return a normalised copy; raise :class:`DataFrameError` if invalid.

    The error lists every problem with its row (index label) and column.

    Example:
        >>> df = pd.DataFrame({"label": [0, 0], "path": ["a.png", "b.png"], "split": ["validation", "test"],
        ...                    "is_query": True, "is_gallery": [True, 2]})
        >>> validate_dataframe(df, check_files=False)
        Traceback (most recent call last):
        ...
        oml_viz.data.dataframe.DataFrameError: invalid OML dataframe: 2 problem(s):
          row 1, column 'split': must be one of ('train', 'validation'), got 'test'
          row 1, column 'is_gallery': must be True/False (or 1/0), got 2
    """
    problems = check_dataframe(df, dataset_root, check_files=check_files, decode=decode, progress=progress)
    if problems:
        raise DataFrameError(problems)
    out = normalize_dataframe(df)
    if dataset_root is not None:
        out.attrs["dataset_root"] = str(dataset_root)
    return out


def read_dataframe(
    source: str | os.PathLike | pd.DataFrame,
    dataset_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
    decode: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Read (a CSV path) or take (a DataFrame) an OML dataframe, validate and normalise it.

    ``dataset_root`` defaults to the CSV's folder. The root is kept in
    ``df.attrs["dataset_root"]`` so the renderer finds the images.

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> Image.new("RGB", (8, 8)).save(f"{root}/a.png")
        >>> pd.DataFrame({"label": [0], "path": ["a.png"], "split": "train", "is_query": False,
        ...               "is_gallery": False}).to_csv(f"{root}/df.csv", index=False)
        >>> df = read_dataframe(f"{root}/df.csv")
        >>> df.attrs["dataset_root"] == root
        True
    """
    if isinstance(source, pd.DataFrame):
        df = source
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"source must be a CSV path or a pandas DataFrame, got {type(source).__name__}")
        csv = Path(source).expanduser()
        if not csv.is_file():
            raise InputFileNotFoundError(f"dataframe file not found: {csv}")
        df = pd.read_csv(csv, dtype={"path": str, "split": str})
        if dataset_root is None:
            dataset_root = csv.parent
    return validate_dataframe(df, dataset_root, check_files=check_files, decode=decode, progress=progress)


def image_paths(df: pd.DataFrame, dataset_root: str | os.PathLike | None = None) -> list[Path]:
    """Absolute-or-root-joined path of every row (root defaults to ``df.attrs``)."""
    if dataset_root is None:
        dataset_root = df.attrs.get("dataset_root")
    return [resolve_path(p, dataset_root) for p in df["path"].tolist()]


def bboxes(df: pd.DataFrame) -> list[tuple[int, int, int, int] | None]:
    """The bbox of every row (None = whole image); all None when the columns are absent."""
    if not all(c in df.columns for c in BBOX_COLUMNS):
        return [None] * len(df)
    return [row_bbox(r) for r in df[list(BBOX_COLUMNS)].to_dict("records")]


def split_ids(df: pd.DataFrame, split: str = "validation") -> np.ndarray:
    """Positions (0..N-1) of the rows in one split."""
    return np.flatnonzero((df["split"] == split).to_numpy())


__all__ = [
    "BBOX_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "DataFrameError",
    "Problem",
    "bboxes",
    "check_dataframe",
    "image_paths",
    "normalize_dataframe",
    "read_dataframe",
    "resolve_path",
    "row_bbox",
    "split_ids",
    "validate_dataframe",
]
