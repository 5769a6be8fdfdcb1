"""Exact k-smallest selection per row with a deterministic tie order (value, then column).

``torch.topk`` over a whole (rows x gallery) block costs about 40 % of a GEMM and leaves the order of
tied values unspecified. Instead:

1. take the minimum of every group of ``GROUP`` columns (one streaming pass, vectorised);
2. keep the k groups with the smallest minima, ordered by (minimum, group index): the k smallest
   elements under the order (value, column) always lie inside them, because every group ranked
   before an element's group holds a distinct element that precedes it;
3. select inside those k * GROUP candidates.

Steps 2 and 3 use a float ``topk``; ties are then settled on int64 keys that pack an
order-preserving image of the float32 value with the position, so the result is exact and
deterministic.
"""
from __future__ import annotations

import torch

GROUP = 128


def ordered_int(values: torch.Tensor) -> torch.Tensor:
    """int64 image of float32 values that sorts exactly as the floats do (-0.0 == +0.0)."""
    bits = (values.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)


def _smallest_by_key(values: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k smallest entries per row, ordered by (value, position). Exact, slower."""
    index = torch.arange(values.shape[1], device=values.device)
    keys = (ordered_int(values) << 32) | index
    return torch.topk(keys, k, dim=1, largest=False, sorted=True).indices


def smallest_positions(values: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k smallest entries per row, ordered by (value, position).

    A float ``topk`` does the work; its order among equal values is unspecified, so the k winners
    are re-sorted on packed keys (cheap: k per row), and the rare rows where values equal to the
    k-th one were left out are redone on keys over the whole row.
    """
    # one extra: when the (k+1)-th value equals the k-th, the cut may have split a tie
    extra = min(k + 1, values.shape[1])
    top, pos = torch.topk(values, extra, dim=1, largest=False, sorted=True)
    tied = (top[:, k] == top[:, k - 1]).nonzero().flatten() if extra > k else pos[:0, 0]
    top, pos = top[:, :k], pos[:, :k]
    keys = (ordered_int(top) << 32) | pos
    pos = pos.gather(1, torch.argsort(keys, dim=1))
    if len(tied):
        pos[tied] = _smallest_by_key(values[tied], k)
    return pos


def smallest_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of each row of ``scores`` (R, C), ordered by (value, column).

    ``C`` must be a multiple of ``GROUP`` (pad with a large finite value) and k <= C.
    Returns ``(values, columns)``, both (R, k).

    Example:
        >>> s = torch.tensor([[3.0, 1.0, 1.0, 0.0] + [9.0] * 124])
        >>> smallest_k(s, 3)[1].tolist()
        [[3, 1, 2]]
    """
    rows, cols = scores.shape
    if cols % GROUP:
        raise ValueError(f"scores has {cols} columns, not a multiple of {GROUP}")
    n_groups = cols // GROUP
    if n_groups <= k:
        pos = smallest_positions(scores, k)
        return scores.gather(1, pos), pos
    grouped = scores.view(rows, n_groups, GROUP)
    best = smallest_positions(grouped.amin(dim=2), k).sort(dim=1).values  # in column order
    candidates = grouped.gather(1, best.unsqueeze(2).expand(rows, k, GROUP)).reshape(rows, k * GROUP)
    pos = smallest_positions(candidates, k)  # positions follow column order: ties by column
    return candidates.gather(1, pos), group_columns(best, pos)


def group_columns(groups: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Columns of positions ``pos`` in candidates made of whole groups ``groups`` (R, m)."""
    return groups.gather(1, pos // GROUP) * GROUP + pos % GROUP
