"""Errors for input a user can fix (a bad argument, config key, file or missing package).

Every one of them is also the standard exception of its kind (``ValueError``, ``TypeError``,
``FileNotFoundError``, ``ImportError``), so ``except ValueError`` keeps working. What they add
is :class:`InputError`, the mark the ``oml-viz`` command looks for: it prints these as one
``error:`` line and exits with status 2, while anything else (a bug) shows its traceback.

Example:
    >>> try:
    ...     raise InputValueError("top_n must be >= 1, got 0")
    ... except ValueError as e:
    ...     print(isinstance(e, InputError), e)
    True top_n must be >= 1, got 0
"""
from __future__ import annotations

__all__ = ["InputError", "InputFileNotFoundError", "InputTypeError", "InputValueError", "MissingDependencyError"]


class InputError(Exception):
    """Base of the errors about the caller's input (arguments, configs, files, installed packages)."""


class InputValueError(InputError, ValueError):
    """A value that is out of range, of the wrong shape, empty or inconsistent."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


class InputFileNotFoundError(InputError, FileNotFoundError):
    """A file or folder named by the input does not exist."""


class MissingDependencyError(InputError, ImportError):
    """An optional package that the requested feature needs is not installed."""
