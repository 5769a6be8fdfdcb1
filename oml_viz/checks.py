"""Argument checks shared by every layer (the lowest module: it imports only numpy).

Example:
    >>> check_int("top_n", np.int64(5), low=1)
    5
    >>> check_int("n_gt", -1, low=0)
    Traceback (most recent call last):
    ...
    oml_viz.errors.InputValueError: n_gt must be an int >= 0, got -1
    >>> check_int("n_queries", True, low=1)
    Traceback (most recent call last):
    ...
    oml_viz.errors.InputTypeError: n_queries must be a positive int, got True (bool)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from oml_viz.errors import InputTypeError, InputValueError

__all__ = ["check_int"]


def _wanted(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an int in {low}..{high}"
    if low == 1:
        return "a positive int"
    if low is not None:
        return f"an int >= {low}"
    if high is not None:
        return f"an int <= {high}"
    return "an int"


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """``value`` as a Python int when it is an int (numpy ints too, bools not) within
    ``low..high`` (both inclusive, either may be None); else an InputTypeError (not an int) or
    InputValueError (out of range) naming ``name``. ``hint`` is appended to the range message."""
    wanted = _wanted(low, high)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputValueError(f"{name} must be {wanted}, got {value!r}{hint}")
    return int(value)
