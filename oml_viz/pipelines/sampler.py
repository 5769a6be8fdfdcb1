"""Balanced batches for metric learning: P labels x K instances per batch.

A triplet miner needs positives and negatives in every batch; drawing batches uniformly from a
dataset with many labels gives few of either. :class:`BalancedBatchSampler` draws ``n_labels``
labels, then ``n_instances`` items of each (with replacement only for labels that have fewer
items than that), so every batch holds ``n_labels * n_instances`` items.

Example:
    >>> sampler = BalancedBatchSampler([0, 0, 1, 1, 2, 2, 2, 2], n_labels=2, n_instances=2, seed=0)
    >>> [len(b) for b in sampler]
    [4, 4]
"""
from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np

from oml_viz.checks import check_int
from oml_viz.errors import InputValueError


class BalancedBatchSampler:
    """Yields lists of dataset indices, ``n_labels`` labels x ``n_instances`` items each.

    One epoch holds about as many items as the dataset: ``len(sampler) == max(1, n_items //
    (n_labels * n_instances))``; each batch draws its labels uniformly without repetition.
    Labels with a single item cannot give a positive pair and are left out (with an error when
    fewer than ``n_labels`` usable labels remain).

    Args:
        labels: one label per dataset item.
        n_labels: P, labels per batch (>= 2: a triplet needs a negative).
        n_instances: K, items per label (>= 2: a triplet needs a positive).
        seed: the epoch-``e`` order is drawn from ``(seed, e)``, so runs repeat exactly.
    """

    def __init__(self, labels: Sequence[Hashable], n_labels: int, n_instances: int, seed: int = 0):
        n_labels = check_int("n_labels", n_labels, low=2, hint=" (a triplet needs a negative label)")
        n_instances = check_int("n_instances", n_instances, low=2, hint=" (a triplet needs a positive)")
        codes, uniques = _codes(labels)
        groups = [np.flatnonzero(codes == c) for c in range(len(uniques))]
        self.groups = [g for g in groups if len(g) >= 2]
        if len(self.groups) < n_labels:
            raise InputValueError(
                f"n_labels={n_labels} but only {len(self.groups)} labels have >= 2 items: "
                "lower sampler.n_labels or use more training labels")
        self.n_labels = n_labels
        self.n_instances = n_instances
        self.seed = seed
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        return self.n_labels * self.n_instances

    def __len__(self) -> int:
        return max(1, self.n_items // self.batch_size)

    @property
    def n_items(self) -> int:
        return int(sum(len(g) for g in self.groups))

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's order the next iteration yields."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1  # a loader that never calls set_epoch still sees new batches each epoch
        for _ in range(len(self)):
            batch: list[int] = []
            for g in rng.choice(len(self.groups), size=self.n_labels, replace=False):
                items = self.groups[g]
                pick = rng.choice(items, size=self.n_instances, replace=len(items) < self.n_instances)
                batch.extend(int(i) for i in pick)
            yield batch


def _codes(labels: Sequence[Hashable]) -> tuple[np.ndarray, list]:
    values = list(labels)
    lookup: dict = {}
    codes = np.array([lookup.setdefault(v, len(lookup)) for v in values], dtype=np.int64)
    return codes, list(lookup)
