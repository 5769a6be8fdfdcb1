"""Thin helpers over ``torch.distributed`` (gloo on CPU, nccl on GPU): who am I, gather, agree.

Everything here is a collective: every process of the group must call it, in the same order.
:func:`agree` is how a check made on one process becomes the same clear error on every process
(instead of one process raising while the others wait forever in the next collective).
Tensor payloads are counted in :func:`traffic` (logical bytes each process sent and received).

Example:
    >>> is_distributed()
    False
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "agree",
    "all_gather_objects",
    "all_gather_rows",
    "all_gather_same",
    "broadcast_object",
    "comm_device",
    "count_traffic",
    "group_info",
    "is_distributed",
]

_traffic: list[dict[str, int]] = []


def is_distributed(group: Any = None) -> bool:
    """True when ``torch.distributed`` is initialised and the group has more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def group_info(group: Any = None, caller: str = "this function") -> tuple[int, int]:
    """``(rank, world_size)`` inside ``group``; a clear error when torch.distributed is not set up."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{caller} needs an initialised torch.distributed process group: call "
            "torch.distributed.init_process_group(...) first (torchrun and Lightning's DDP do it); "
            "with a single process use oml_viz.retrieve"
        )
    rank = dist.get_rank(group)
    if rank < 0:
        raise RuntimeError(f"{caller}: this process is not a member of the given group")
    return rank, dist.get_world_size(group)


def comm_device(group: Any = None) -> torch.device:
    """Where collective tensors must live: the current CUDA device for nccl, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _global_rank(group: Any, rank: int) -> int:
    import torch.distributed as dist

    return rank if group is None else dist.get_global_rank(group, rank)


def all_gather_objects(obj: Any, group: Any = None) -> list[Any]:
    """Every process's (small, picklable) ``obj``, in rank order, on every process."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def broadcast_object(obj: Any, src: int = 0, group: Any = None) -> Any:
    """``obj`` of group rank ``src`` on every process."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=_global_rank(group, src), group=group)
    return box[0]


def agree(error: str | None, group: Any = None, what: str = "") -> None:
    """Raise the same ``ValueError`` on every process when any process reports an ``error``."""
    errors = all_gather_objects(error, group)
    bad = [(r, e) for r, e in enumerate(errors) if e]
    if bad:
        text = "; ".join(f"rank {r}: {e}" for r, e in bad)
        raise ValueError(f"{what}{text}")


def _count(sent: int, received: int) -> None:
    for counter in _traffic:
        counter["sent"] += sent
        counter["received"] += received
        counter["calls"] += 1


@contextmanager
def count_traffic() -> Iterator[dict[str, int]]:
    """Count the tensor bytes this process sends and receives in the helpers' collectives.

    Logical payload: an all-gather of T bytes per process counts T sent and (W - 1) * T received
    (what a ring implementation moves, give or take the 1/W of its own slot).

    Example:
        >>> with count_traffic() as bytes_moved:
        ...     pass
        >>> bytes_moved
        {'sent': 0, 'received': 0, 'calls': 0}
    """
    counter = {"sent": 0, "received": 0, "calls": 0}
    _traffic.append(counter)
    try:
        yield counter
    finally:
        _traffic.remove(counter)


def all_gather_same(tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
    """All processes' tensors of one shape and dtype, in rank order (on the tensor's device)."""
    import torch.distributed as dist

    world = dist.get_world_size(group)
    device = comm_device(group)
    local = tensor.to(device).contiguous()
    out = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(out, local, group=group)
    size = local.numel() * local.element_size()
    _count(size, size * (world - 1))
    return [t.to(tensor.device) for t in out]


def all_gather_rows(tensor: torch.Tensor, group: Any = None, counts: list[int] | None = None) -> list[torch.Tensor]:
    """All processes' tensors whose first dimension may differ (the rest must agree), in rank order.

    ``counts`` (every process's row count) saves a round trip when already known.
    """
    if counts is None:
        counts = [int(c) for c in all_gather_objects(int(tensor.shape[0]), group)]
    longest = max(counts)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = all_gather_same(padded, group)
    return [part[:n] for part, n in zip(parts, counts)]
