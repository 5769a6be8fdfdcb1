"""Triplet miners: pick (anchor, positive, negative) index triples from a labelled batch.

Each miner is a small callable object with one method, ``mine(features, labels)``, that returns
three equally long int64 tensors of row indices into ``features``.

Example:
    >>> import torch
    >>> a, p, n = AllTripletsMiner().mine(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    >>> len(a)  # 4 anchors x 1 positive x 2 negatives
    8
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["AllTripletsMiner", "HardTripletsMiner", "TripletMiner"]


def _check_batch(features: Tensor, labels: Tensor) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be a (B, D) tensor, got shape {tuple(features.shape)}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(
            f"labels must be a (B,) tensor matching features' {len(features)} rows, "
            f"got shape {tuple(labels.shape)}"
        )


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, B) masks of valid positives (same label, not itself) and negatives (other label)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class TripletMiner:
    """Base of the miners: subclasses implement :meth:`mine`."""

    def mine(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AllTripletsMiner(TripletMiner):
    """Every valid triplet of the batch: ``labels[a] == labels[p]``, ``a != p``, ``labels[n] != labels[a]``.

    Args:
        max_triplets: keep a random subset of at most this many (``None`` keeps all). The batch
            size cubes the count, so large batches need a cap.
    """

    def __init__(self, max_triplets: int | None = None) -> None:
        if max_triplets is not None and max_triplets < 1:
            raise ValueError(f"max_triplets must be >= 1 or None, got {max_triplets}")
        self.max_triplets = max_triplets

    def mine(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _check_batch(features, labels)
        pos, neg = _masks(labels)
        valid = pos[:, :, None] & neg[:, None, :]  # (a, p, n)
        a, p, n = valid.nonzero(as_tuple=True)
        if self.max_triplets is not None and len(a) > self.max_triplets:
            keep = torch.randperm(len(a), device=a.device)[: self.max_triplets]
            a, p, n = a[keep], p[keep], n[keep]
        return a, p, n

    def __repr__(self) -> str:
        return f"AllTripletsMiner(max_triplets={self.max_triplets})"


class HardTripletsMiner(TripletMiner):
    """Batch-hard mining: for each anchor, its farthest positive and its nearest negative.

    Anchors with no positive or no negative in the batch give no triplet. Distances are
    Euclidean and computed without gradient (mining only chooses indices).
    """

    def mine(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _check_batch(features, labels)
        pos, neg = _masks(labels)
        with torch.no_grad():
            dist = torch.cdist(features.float(), features.float())
        anchors = (pos.any(1) & neg.any(1)).nonzero(as_tuple=True)[0]
        far_pos = dist.masked_fill(~pos, float("-inf")).argmax(1)
        near_neg = dist.masked_fill(~neg, float("inf")).argmin(1)
        return anchors, far_pos[anchors], near_neg[anchors]
