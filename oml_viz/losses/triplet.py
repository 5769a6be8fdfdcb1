"""Triplet margin loss with the statistics a tracker should show next to it.

``last_logs`` after each forward call holds floats:

- ``pos_dist``: mean anchor-positive Euclidean distance,
- ``neg_dist``: mean anchor-negative Euclidean distance,
- ``active_tri``: share of triplets that still push the model, i.e. with a positive hinge
  ``margin + d(a, p) - d(a, n) > 0``. With the soft margin (``margin=None``) the loss
  ``log(1 + exp(d(a, p) - d(a, n)))`` is never exactly zero, so a triplet counts as active when
  ``d(a, p) > d(a, n)`` (the hinge at margin 0), which keeps the number informative.

Example:
    >>> import torch
    >>> from oml_viz.losses import HardTripletsMiner, TripletLossWithMiner
    >>> loss_fn = TripletLossWithMiner(margin=0.1, miner=HardTripletsMiner())
    >>> loss = loss_fn(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    >>> sorted(loss_fn.last_logs)
    ['active_tri', 'neg_dist', 'pos_dist']
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oml_viz.losses.miners import AllTripletsMiner, TripletMiner

__all__ = ["TripletLoss", "TripletLossWithMiner"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        # mean of nothing is NaN; an empty batch of triplets should not poison training
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


class TripletLoss(nn.Module):
    """Loss over explicit (anchor, positive, negative) embedding triplets.

    Args:
        margin: hinge margin (> 0), or ``None`` for the soft margin ``softplus(d_ap - d_an)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-triplet losses).
    """

    def __init__(self, margin: float | None = 0.1, reduction: str = "mean") -> None:
        super().__init__()
        if margin is not None and not margin > 0:
            raise ValueError(f"margin must be > 0 or None (soft margin), got {margin}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.margin = margin
        self.reduction = reduction
        self.last_logs: dict[str, float] = {}

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        if not anchor.shape == positive.shape == negative.shape or anchor.ndim != 2:
            raise ValueError(
                "anchor, positive and negative must be (T, D) tensors of one shape, got "
                f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
            )
        d_pos = F.pairwise_distance(anchor, positive, eps=0.0)
        d_neg = F.pairwise_distance(anchor, negative, eps=0.0)
        gap = d_pos - d_neg
        if self.margin is None:
            loss = F.softplus(gap)  # log(1 + exp(gap)), stable for large gaps
            active = gap > 0
        else:
            loss = torch.relu(self.margin + gap)
            active = loss > 0
        self.last_logs = self._stats(d_pos, d_neg, active)
        return _reduce(loss, self.reduction)

    @staticmethod
    def _stats(d_pos: Tensor, d_neg: Tensor, active: Tensor) -> dict[str, float]:
        if d_pos.numel() == 0:
            nan = float("nan")
            return {"pos_dist": nan, "neg_dist": nan, "active_tri": 0.0}
        return {
            "pos_dist": float(d_pos.detach().mean()),
            "neg_dist": float(d_neg.detach().mean()),
            "active_tri": float(active.detach().float().mean()),
        }

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


class TripletLossWithMiner(nn.Module):
    """Triplet loss on a labelled batch: a miner picks the triplets, :class:`TripletLoss` scores them.

    Args:
        margin: as in :class:`TripletLoss` (``None`` = soft margin).
        miner: an :class:`~oml_viz.losses.miners.TripletMiner`; default all valid triplets.
        reduction: as in :class:`TripletLoss`.

    ``forward(features (B, D), labels (B,))``; ``last_logs`` as :class:`TripletLoss`'s.
    A batch without any valid triplet gives a zero loss (still attached to the graph) and NaN
    distances in ``last_logs``.
    """

    def __init__(
        self,
        margin: float | None = 0.1,
        miner: TripletMiner | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.miner = miner if miner is not None else AllTripletsMiner()
        if not hasattr(self.miner, "mine"):
            raise ValueError(f"miner must have a mine(features, labels) method, got {self.miner!r}")
        self.tri_loss = TripletLoss(margin=margin, reduction=reduction)

    @property
    def last_logs(self) -> dict[str, float]:
        return self.tri_loss.last_logs

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        labels = torch.as_tensor(labels, device=features.device)
        a, p, n = self.miner.mine(features, labels)
        loss = self.tri_loss(features[a], features[p], features[n])
        if a.numel() == 0:
            loss = loss + 0.0 * features.sum()  # keep a grad path so backward() still works
        return loss

    def extra_repr(self) -> str:
        return f"miner={self.miner!r}"
