"""Where and at what size a model runs: ``device=`` and ``input_size=`` read one way in every layer
(retrieval, extraction, explanations, analysis).

A device that this machine does not have is our ``ValueError`` naming the argument, not torch's
driver error from deep inside the first ``.to(device)``.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device(None).type in ("cpu", "cuda")
    True
    >>> check_input_size([64, 48])
    (64, 48)
"""
from __future__ import annotations

from typing import Any

import torch

from oml_viz.checks import check_int
from oml_viz.errors import InputTypeError, InputValueError

__all__ = ["check_input_size", "resolve_device"]


def resolve_device(device: Any, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device``; None = CUDA when available, else CPU.

    Raises TypeError for what is no device and ValueError for an unknown name or a device
    (CUDA, a CUDA index, MPS) that this machine does not have.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise InputTypeError(f"{name} must be a torch device or its name ('cpu', 'cuda', 'cuda:1'), "
                        f"got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputValueError(f"{name} {device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputValueError(f"{name} {device!r} asked for, but CUDA is not available on this machine "
                             "(torch.cuda.is_available() is False): use device='cpu', or None for CUDA when there is one")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputValueError(f"{name} {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputValueError(f"{name} {device!r} asked for, but MPS is not available on this machine: use device='cpu'")
    return dev


def check_input_size(input_size: Any, name: str = "input_size") -> tuple[int, int]:
    """``(height, width)`` as two positive ints; TypeError / ValueError naming ``name`` otherwise."""
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__") or len(input_size) != 2:
        raise InputTypeError(f"{name} must be (height, width), got {input_size!r}")
    height, width = (check_int(f"{name}[{i}] ({side})", v, low=1, hint=f" in {tuple(input_size)!r}")
                      for i, (side, v) in enumerate(zip(("height", "width"), input_size)))
    return height, width
