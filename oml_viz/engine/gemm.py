"""The score product ``A @ B.T`` on the fastest matrix-multiply backend, chosen by one measurement.

Machines differ in which library multiplies fastest (on one AMD CPU: torch's MKL fp32 at ~100
GFLOP/s, numpy's OpenBLAS fp32 at ~180, torch's bf16 at ~275). :func:`choose_backend` times one
product per candidate backend the first time a device is used and keeps the winner for the process;
no CPU name is ever looked up.

Every backend states how it rounds (``u_in``: unit roundoff of the operands' conversion, ``u_out``:
of the result's), which is all :mod:`.candidates` needs to bound its error and stay exact.

Example:
    >>> import torch
    >>> backend = BACKENDS["torch-fp32"]
    >>> a, b = torch.ones(2, 3), torch.ones(4, 3)
    >>> backend.mm(backend.prepare(a), backend.prepare(b)).tolist()
    [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

# bf16 must beat the best fp32 rate by this much to pay for its wider verification. Measured end to
# end at 50k (fresh processes, interleaved): bf16 9.4-9.9 s, numpy fp32 18.2 s (OpenBLAS's threads
# keep spinning after each product and slow the steps after it), at rates 1.3-1.75x apart
BF16_ADVANTAGE = 1.1
_ENV = "OML_VIZ_GEMM"  # force a backend by name (tests, benchmarks)
_chosen: dict[str, Backend] = {}
_rates: dict[str, dict[str, float]] = {}


@dataclass(frozen=True)
class Backend:
    """One way to compute ``a @ b.T``: operand dtype, library, and its rounding units."""

    name: str
    dtype: torch.dtype
    library: str  # "torch" or "numpy"
    u_in: float  # operands are rounded to this unit roundoff (0: used exactly as given)
    u_out: float  # the result is rounded to this unit roundoff (0: float32 result)

    def prepare(self, matrix: torch.Tensor) -> torch.Tensor:
        """The operand in this backend's dtype, contiguous (rows are items)."""
        return matrix.to(self.dtype).contiguous()

    def mm(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``a @ b.T`` for prepared operands; float32 or bfloat16 result on ``a``'s device (written
        into ``out``, a contiguous tensor of the result's shape and dtype, when given)."""
        if self.library == "numpy":
            if out is None:
                return torch.from_numpy(np.matmul(a.numpy(), b.numpy().T))
            np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
            return out
        return torch.mm(a, b.T) if out is None else torch.mm(a, b.T, out=out)


BACKENDS = {
    "torch-fp32": Backend("torch-fp32", torch.float32, "torch", 0.0, 0.0),
    "numpy-fp32": Backend("numpy-fp32", torch.float32, "numpy", 0.0, 0.0),
    "torch-bf16": Backend("torch-bf16", torch.bfloat16, "torch", 2.0**-8, 2.0**-8),
    # CUDA: the operands may be rounded to TF32 (10 stored bits) whatever the flags say later
    "cuda-tf32": Backend("cuda-tf32", torch.float32, "torch", 2.0**-11, 0.0),
}


def operand_rounding(backend: Backend, rows: torch.Tensor, piece: int = 1024) -> float:
    """The largest ``|r~ - r| / |r|`` over ``rows`` (float32), ``r~`` the row as ``backend`` multiplies it.

    Cauchy-Schwarz bounds a product's operand error by this measured ratio times the norms, about half
    the unit roundoff that bounds each element (bf16: ~0.52 u on any data, 0.42 u on average). A backend
    that rounds inside the product (TF32) is not measurable here: its ``u_in`` is returned.

    Example:
        >>> round(operand_rounding(BACKENDS["torch-bf16"], torch.tensor([[1.0, 0.0], [1.0 + 2**-9, 0.0]])), 6)
        0.001949
        >>> operand_rounding(BACKENDS["torch-fp32"], torch.randn(3, 4))
        0.0
    """
    if backend.dtype == torch.float32:
        return backend.u_in
    worst = 0.0
    for start in range(0, len(rows), piece):  # pieces: no float64 copy of all rows
        r = rows[start : start + piece].double()
        err = (rows[start : start + piece].to(backend.dtype).double() - r).norm(dim=1)
        norm = r.norm(dim=1)
        ratio = torch.where(norm > 0, err / norm.clamp(min=1e-300), torch.zeros_like(norm))
        worst = max(worst, float(ratio.max()) if len(ratio) else 0.0)
    return worst * (1 + 1e-10)  # the float64 norms' own rounding


def fp32_backend(device: torch.device) -> Backend:
    """The float32 backend that :mod:`.candidates` falls back to on ``device``."""
    return BACKENDS["cuda-tf32" if device.type == "cuda" else "torch-fp32"]


def _operands(backend: Backend, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    a = backend.prepare(torch.randn(512, dim + 1, generator=gen).to(device))
    b = backend.prepare(torch.randn(8192, dim + 1, generator=gen).to(device))
    return a, b


def _time(backend: Backend, a: torch.Tensor, b: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    backend.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _rate(backend: Backend, dim: int, device: torch.device) -> float:
    """Measured flop/s of one 512 x dim x 8192 product (best of 3, after one warm-up)."""
    a, b = _operands(backend, dim, device)
    _time(backend, a, b, device)
    return 2 * a.shape[0] * b.shape[0] * a.shape[1] / min(_time(backend, a, b, device) for _ in range(3))


def candidates_for(device: torch.device) -> list[Backend]:
    """Backends worth timing on ``device``."""
    if device.type == "cuda":
        return [BACKENDS["cuda-tf32"]]
    out = [BACKENDS["torch-fp32"], BACKENDS["numpy-fp32"]]
    try:
        torch.mm(torch.ones(2, 2, dtype=torch.bfloat16), torch.ones(2, 2, dtype=torch.bfloat16))
        out.append(BACKENDS["torch-bf16"])
    except RuntimeError:  # no bf16 kernel on this build
        pass
    return out


def measure_rates(device: torch.device, dim: int = 384, rounds: int = 3) -> dict[str, float]:
    """flop/s of every candidate backend on ``device``: the best of ``rounds`` products each, the
    backends taking turns so that a burst of load on a shared machine hits them alike."""
    backends = candidates_for(device)
    operands = {b.name: _operands(b, dim, device) for b in backends}
    best = {b.name: float("inf") for b in backends}
    for round_ in range(rounds + 1):
        for b in backends:
            seconds = _time(b, *operands[b.name], device)
            if round_:  # the first round warms up
                best[b.name] = min(best[b.name], seconds)
    a, g = operands[backends[0].name]
    return {name: 2 * a.shape[0] * g.shape[0] * a.shape[1] / s for name, s in best.items()}


def choose_backend(device: torch.device, measure: bool = True) -> Backend:
    """The fastest backend on ``device``, measured once per process (env ``OML_VIZ_GEMM`` forces one).

    bf16 wins only when it beats the best float32 rate by ``BF16_ADVANTAGE``: its looser error bound
    leaves more candidates to verify. ``measure=False`` (small problems): the float32 backend, unless
    one is forced.
    """
    forced = os.environ.get(_ENV)
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{_ENV}={forced!r} is not one of {sorted(BACKENDS)}")
        return BACKENDS[forced]
    if not measure:
        return fp32_backend(device)
    key = str(device)
    if key not in _chosen:
        rates = _rates[key] = measure_rates(device)
        fp32 = max((r, n) for n, r in rates.items() if BACKENDS[n].dtype == torch.float32)
        best = BACKENDS[fp32[1]]
        if rates.get("torch-bf16", 0.0) > BF16_ADVANTAGE * fp32[0]:
            best = BACKENDS["torch-bf16"]
        _chosen[key] = best
    return _chosen[key]


def fastest_fp32(device: torch.device) -> Backend:
    """The fastest float32 backend on ``device`` (for passes that need float32's tight bound)."""
    forced = os.environ.get(_ENV)
    if forced in BACKENDS and BACKENDS[forced].dtype == torch.float32:
        return BACKENDS[forced]
    if forced or device.type == "cuda":
        return fp32_backend(device)
    choose_backend(device)
    rates = _rates[str(device)]
    return BACKENDS[max((r, n) for n, r in rates.items() if BACKENDS[n].dtype == torch.float32)[1]]
