"""Input checks for the engine: every error names the argument and the first offending rows."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.checks import check_int
from oml_viz.errors import InputTypeError, InputValueError

DISTANCES = ("euclidean", "cosine")
_MAX_ROWS_SHOWN = 5


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_SHOWN])
    more = f" and {len(rows) - _MAX_ROWS_SHOWN} more" if len(rows) > _MAX_ROWS_SHOWN else ""
    return f"rows [{shown}]{more}"


def as_embeddings(embeddings: Any) -> torch.Tensor:
    """A float32 CPU tensor that never shares memory with the caller's array."""
    if isinstance(embeddings, torch.Tensor):
        tensor = embeddings.detach().to("cpu", torch.float32)
        if tensor.data_ptr() == embeddings.data_ptr():
            tensor = tensor.clone()
    else:
        try:
            array = np.array(embeddings, dtype=np.float32, copy=True)
        except (TypeError, ValueError) as exc:
            raise InputValueError(f"embeddings must be a numeric (N, D) array: {exc}") from None
        tensor = torch.from_numpy(array)
    if tensor.ndim != 2:
        raise InputValueError(f"embeddings must be 2-D (N, D); got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise InputValueError(f"embeddings must be non-empty; got shape {tuple(tensor.shape)}")
    # a NaN or inf makes its row's sum non-finite: one cheap pass; the row-by-row check only when a sum is
    # (or finite values overflowed it)
    if not bool(torch.isfinite(tensor.sum(dim=1)).all()):
        bad = torch.cat([~torch.isfinite(piece).all(dim=1) for piece in tensor.split(4096)])  # no full-size mask
        if bool(bad.any()):
            raise InputValueError(f"embeddings contain NaN or inf in {_rows(bad.numpy())}")
    return tensor.contiguous()


def _length(name: str, values: Any, n: int) -> np.ndarray:
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise InputTypeError(f"{name} must hold one value per embedding (a sequence or array), got {values!r:.60}")
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, (pd.Series, pd.Index)):
        array = values.to_numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        values = list(values)
        if any(isinstance(v, tuple) for v in values):  # tuples are labels, not a second axis
            array = np.empty(len(values), dtype=object)
            array[:] = values
        else:
            array = np.asarray(values)
            if array.dtype.kind in "US" and not all(isinstance(v, (str, bytes)) for v in values):
                array = np.empty(len(values), dtype=object)  # mixed types (1, "a") stay as given
                array[:] = values
    if array.ndim != 1:
        raise InputValueError(f"{name} must be 1-D with one value per embedding; got shape {array.shape}")
    if len(array) != n:
        raise InputValueError(f"{name} has {len(array)} values but embeddings has {n} rows")
    return array


def as_codes(name: str, values: Any, n: int, *, missing_unique: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Factorise hashable values into int64 codes (and the unique values).

    With ``missing_unique`` a missing value (None/NaN) gets a code of its own (used for sequence
    ids: an item without a sequence shares it with nobody); otherwise missing values are an error.
    """
    array = _length(name, values, n)
    try:
        codes, uniques = pd.factorize(array, use_na_sentinel=True)
    except TypeError as exc:
        raise InputValueError(f"{name} must hold hashable values: {exc}") from None
    codes = np.asarray(codes, dtype=np.int64)
    missing = codes < 0
    if missing.any():
        if not missing_unique:
            raise InputValueError(f"{name} has missing values (None/NaN) in {_rows(missing)}")
        codes = codes.copy()
        codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes, np.asarray(uniques, dtype=object)


def as_mask(name: str, values: Any, n: int) -> np.ndarray:
    """A boolean mask of length n; ``None`` means every item."""
    if values is None:
        return np.ones(n, dtype=bool)
    array = _length(name, values, n)
    if array.dtype == bool:
        return array.copy()
    if array.dtype.kind in "iuf":
        bad = ~np.isin(array, (0, 1))
        if bad.any():
            raise InputValueError(f"{name} must be booleans (or 0/1); bad values in {_rows(bad)}")
        return array.astype(bool)
    if array.dtype == object:
        bad = np.array([not isinstance(v, (bool, np.bool_)) and v not in (0, 1) for v in array])
        if bad.any():
            raise InputValueError(f"{name} must be booleans (or 0/1); bad values in {_rows(bad)}")
        return array.astype(bool)
    raise InputValueError(f"{name} must be booleans; got dtype {array.dtype}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InputValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    return check_int(name, value, low=1)


def resolve_device(device: Any) -> torch.device:
    """None = CUDA when available; a device this machine lacks is a ValueError (see :mod:`oml_viz.run_args`)."""
    from oml_viz.run_args import resolve_device as resolve

    return resolve(device)
