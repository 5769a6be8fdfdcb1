"""BalancedBatchSampler: P distinct labels x K items per batch, repeatable, clear errors."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oml_viz.pipelines.sampler import BalancedBatchSampler


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=12),
    n_labels=st.integers(2, 5),
    n_instances=st.integers(2, 5),
    seed=st.integers(0, 3),
)
def test_every_batch_is_p_labels_by_k_items(sizes, n_labels, n_instances, seed):
    labels = np.repeat([f"L{i}" for i in range(len(sizes))], sizes)
    np.random.default_rng(seed).shuffle(labels)
    usable = [f"L{i}" for i, s in enumerate(sizes) if s >= 2]
    if len(usable) < n_labels:
        with pytest.raises(ValueError, match=f"n_labels={n_labels} but only {len(usable)} labels"):
            BalancedBatchSampler(labels, n_labels, n_instances, seed=seed)
        return
    sampler = BalancedBatchSampler(labels, n_labels, n_instances, seed=seed)
    batches = list(sampler)
    n_items = sum(s for s in sizes if s >= 2)
    assert len(batches) == len(sampler) == max(1, n_items // (n_labels * n_instances))
    for batch in batches:
        assert len(batch) == n_labels * n_instances
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == n_labels and set(counts.values()) == {n_instances}
        assert set(counts) <= set(usable)  # single-item labels never appear
        for lab in counts:  # no repeated item unless the label has fewer than K items
            items = [i for i in batch if labels[i] == lab]
            if sizes[int(lab[1:])] >= n_instances:
                assert len(set(items)) == n_instances


def test_epochs_repeat_per_seed_and_differ_between_epochs():
    labels = np.repeat(np.arange(10), 6)
    a = BalancedBatchSampler(labels, 4, 3, seed=1)
    b = BalancedBatchSampler(labels, 4, 3, seed=1)
    first, second = list(a), list(a)
    assert first == list(b) and second == list(b)
    assert first != second  # the sampler moves to the next epoch by itself
    a.set_epoch(0)
    assert list(a) == first
    assert list(BalancedBatchSampler(labels, 4, 3, seed=2)) != first


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_labels must be an int >= 2"):
        BalancedBatchSampler([0, 0, 1, 1], 1, 2)
    with pytest.raises(ValueError, match="n_instances must be an int >= 2"):
        BalancedBatchSampler([0, 0, 1, 1], 2, 1)
    with pytest.raises(TypeError, match="n_instances must be an int >= 2, got True"):
        BalancedBatchSampler([0, 0, 1, 1], 2, True)
