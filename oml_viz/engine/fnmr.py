"""Exact FNMR@FMR without a Q x G matrix: :func:`fnmr_at_fmr` picks the algorithm.

For each group of queries (OVERALL and each category) the threshold t is the p-quantile (linear
interpolation, as ``numpy.quantile``) of the non-relevant pairs' distances, and FNMR is the share of
relevant pairs with distance >= t. Three algorithms give the same values, from the fastest:

- :mod:`.fnmr_single_pass` (the default): one product pass over every pair, with the quantiles
  bracketed beforehand from a seeded, stratified sample of queries; where those brackets would keep
  too many pairs (the sample's margin does not shrink with N: from ~60k items), one histogram pass over
  every pair brackets each quantile by its exact bin first. The relevant pairs, however many, are
  compared with each threshold from their exact distances, in pieces;
- :mod:`.fnmr_windows`: a histogram pass, then a pass that collects a narrow window per quantile;
  where a bracket of the single pass misses (checked, rare) on a problem of up to ``_MAX_WINDOWED_PAIRS``
  with at most ``_MAX_RELEVANT`` relevant pairs (it lists them);
- :mod:`.fnmr_two_pass`: the older algorithm, for what no other path could decide (one quantile's
  nearby pairs alone over the single pass's budget). Its quantiles come from the product's distances,
  not the exact ones, so a pair within the product's rounding of a threshold can fall on the other side
  (measured: one relevant pair in 150k on 4 of 10 clustered euclidean sets).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import fnmr_single_pass, fnmr_two_pass, fnmr_windows
from .fnmr_pairs import FnmrTask

__all__ = ["FnmrTask", "fnmr_at_fmr"]

_MAX_RELEVANT = 1 << 25  # relevant pairs scored directly; more: the older algorithm
# above this many pairs the windows (~4 W wide, W the float32 product's proven error) hold millions of
# pairs to verify, and the older algorithm is faster (measured: 1.8x faster at 10k^2, slower at 30k^2)
_MAX_WINDOWED_PAIRS = 3e8


def fnmr_at_fmr(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    label_codes: np.ndarray,
    seq_codes: np.ndarray,
    query_groups: np.ndarray,
    n_groups: int,
    fmr_vals: Sequence[float],
    distance: str,
    device: torch.device,
) -> np.ndarray:
    """(1 + n_groups, len(fmr_vals)) FNMR values: row 0 is OVERALL, row 1 + g is group g.

    Example:
        >>> v = torch.tensor([[0.0], [2.0], [3.0], [4.0]])
        >>> ids = np.arange(4)  # labels 0, 0, 1, 1: relevant distances 2, 2, 1, 1
        >>> fnmr_at_fmr(v, ids, ids, np.array([0, 0, 1, 1]), ids, np.zeros(4, int), 1, [0.3], "euclidean",
        ...             torch.device("cpu")).tolist()
        [[0.5], [0.5]]
    """
    task = FnmrTask(vectors, query_ids, gallery_ids, label_codes, seq_codes, query_groups, n_groups, fmr_vals,
                    distance, device)
    out = fnmr_single_pass.fnmr_single_pass(task)
    if out is not None:
        return out
    g_labels = label_codes[gallery_ids]
    per_label = np.bincount(g_labels, minlength=int(label_codes.max()) + 1)
    many_relevant = int(per_label[label_codes[query_ids]].sum()) > _MAX_RELEVANT  # the window path lists them
    if many_relevant or len(query_ids) * len(gallery_ids) > _MAX_WINDOWED_PAIRS:
        return fnmr_two_pass.fnmr_two_pass(task)
    out = fnmr_windows.fnmr_windows(task)
    return fnmr_two_pass.fnmr_two_pass(task) if out is None else out
