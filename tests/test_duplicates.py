"""find_duplicates against brute-force pair distances: planted copies, cross-split flags, sequences."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oml_viz as ov
from oml_viz.analysis.duplicates import auto_threshold


def brute_pairs(emb: np.ndarray, threshold: float, seq: np.ndarray | None = None) -> set[tuple[int, int]]:
    x = emb.astype(np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    a, b = np.triu_indices(len(x), 1)
    keep = d[a, b] <= threshold
    if seq is not None:
        keep &= seq[a] != seq[b]
    return set(zip(a[keep].tolist(), b[keep].tolist()))


def planted(seed: int, n: int, dim: int, n_exact: int, n_near: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim)) * 4
    emb = (centres[rng.integers(0, 5, n)] + rng.normal(size=(n, dim))).astype(np.float32)
    src = rng.choice(n, n_exact + n_near, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), n_exact + n_near, replace=False)
    emb[dst[:n_exact]] = emb[src[:n_exact]]
    emb[dst[n_exact:]] = emb[src[n_exact:]] + rng.normal(size=(n_near, dim)).astype(np.float32) * 1e-3
    pairs = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}
    return emb, pairs, {(min(a, b), max(a, b)) for a, b in zip(src[:n_exact].tolist(), dst[:n_exact].tolist())}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(30, 120), dim=st.integers(8, 64), n_exact=st.integers(0, 4),
       n_near=st.integers(1, 4))
def test_planted_duplicates_found_and_match_brute_force(seed, n, dim, n_exact, n_near):
    """Embedding-like dimensions (>= 8): in 2-D the nearest-neighbour distances of random points
    spread over orders of magnitude, and the automatic cut can fall below a planted copy."""
    emb, pairs, _ = planted(seed, n, dim, n_exact, n_near)
    splits = np.where(np.random.default_rng(seed).random(n) < 0.5, "train", "validation")
    labels = np.arange(n) % 3
    dups = ov.find_duplicates(emb, splits=splits, labels=labels)
    t = dups.attrs["threshold"]
    assert dups.attrs["auto_threshold"] is True
    found = set(zip(dups["id_a"].tolist(), dups["id_b"].tolist()))
    assert pairs <= found  # every planted copy is found by the automatic cut
    assert found == brute_pairs(emb, t)
    assert (dups["id_a"] < dups["id_b"]).all()
    d = dups["distance"].to_numpy()
    assert (np.diff(d) >= 0).all()
    assert dups["cross_split"].tolist() == (splits[dups["id_a"]] != splits[dups["id_b"]]).tolist()
    assert dups["same_label"].tolist() == (labels[dups["id_a"]] == labels[dups["id_b"]]).tolist()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.floats(0.0, 3.0))
def test_given_threshold_equals_brute_force(seed, threshold):
    emb, _, exact = planted(seed, 60, 4, 2, 2)
    dups = ov.find_duplicates(emb, threshold=threshold)
    found = set(zip(dups["id_a"].tolist(), dups["id_b"].tolist()))
    ref = brute_pairs(emb, threshold)
    # the engine's float32 distances may put a pair within 1e-5 of the cut on either side
    x = emb.astype(np.float64)
    near_cut = {p for p in found ^ ref if abs(np.linalg.norm(x[p[0]] - x[p[1]]) - threshold) < 1e-4}
    assert found ^ ref == near_cut
    assert exact <= found and dups.attrs["threshold"] == threshold and dups.attrs["auto_threshold"] is False
    assert dups["same_label"].isna().all() and dups["cross_split"].isna().all()


def test_exact_copies_always_count_and_big_groups_are_complete():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    emb[10:22] = emb[3]  # 13 identical rows: 78 pairs, far more than the first pass's neighbours
    dups = ov.find_duplicates(emb, threshold=0.0)
    group = [3, *range(10, 22)]
    expected = {(a, b) for i, a in enumerate(group) for b in group[i + 1:]}
    assert set(zip(dups["id_a"], dups["id_b"])) == expected and (dups["distance"] == 0).all()
    cos = ov.find_duplicates(emb * 3, threshold=0.0, distance="cosine")
    assert expected <= set(zip(cos["id_a"], cos["id_b"]))  # identical rows, whatever rounding says


def test_same_sequence_pairs_are_never_reported():
    emb, pairs, exact = planted(5, 50, 5, 3, 3)
    seq = np.arange(50)
    a, b = sorted(exact)[0]
    c, d = sorted(pairs - exact)[0]
    seq[b], seq[d] = a, c  # one exact and one near copy each in its source's sequence
    dups = ov.find_duplicates(emb, sequence_ids=seq)
    found = set(zip(dups["id_a"], dups["id_b"]))
    assert (a, b) not in found and (c, d) not in found
    assert pairs - {(a, b), (c, d)} <= found
    assert found == brute_pairs(emb, dups.attrs["threshold"], seq)


def test_cross_split_marks_leaks():
    emb, pairs, _ = planted(9, 80, 8, 1, 3)
    splits = pd.Series(["train"] * 40 + ["validation"] * 40)
    dups = ov.find_duplicates(torch.from_numpy(emb), splits=splits)
    for row in dups.itertuples():
        assert row.cross_split == ((row.id_a < 40) != (row.id_b < 40))


def test_auto_threshold_is_a_low_outlier_cut():
    rng = np.random.default_rng(0)
    d = rng.lognormal(0.0, 0.1, 1000)
    t = auto_threshold(np.r_[d, [1e-3, 2e-3]])
    assert 2e-3 < t < d.min()
    assert auto_threshold(np.ones(10)) == 0.0 and auto_threshold(np.zeros(5)) == 0.0


def test_bad_inputs_are_named():
    emb = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="splits has 9 values but embeddings has 10 rows"):
        ov.find_duplicates(emb, splits=["a"] * 9)
    with pytest.raises(ValueError, match="labels has 11 values"):
        ov.find_duplicates(emb, labels=list(range(11)))
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        ov.find_duplicates(emb, threshold=-1.0)
    with pytest.raises(ValueError, match="threshold must be"):
        ov.find_duplicates(emb, threshold="auto")
    with pytest.raises(ValueError, match="at least 2 items"):
        ov.find_duplicates(emb[:1])
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[2\]"):
        bad = emb.copy()
        bad[2, 0] = np.inf
        ov.find_duplicates(bad)
