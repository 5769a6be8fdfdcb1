"""find_label_issues: planted wrong labels are found and ranked first; sequences; bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import oml_viz as ov
from oml_viz.analysis.label_issues import knn_vote_scores


def centre_gap(seed: int, n_classes: int, dim: int) -> float:
    """Smallest distance between two class centres that ``clustered`` draws for these arguments."""
    centres = np.random.default_rng(seed).normal(size=(n_classes, dim)) * 3
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    return float(d[np.triu_indices(n_classes, 1)].min())


def clustered(seed: int, n_classes: int, per_class: int, dim: int, spread: float = 0.15):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = centres[labels] + rng.normal(size=(len(labels), dim)) * spread
    return emb.astype(np.float32), labels


def flip(labels: np.ndarray, n_flip: int, seed: int):
    rng = np.random.default_rng(seed + 1000)
    idx = rng.choice(len(labels), n_flip, replace=False)
    c = labels.max() + 1
    noisy = labels.copy()
    noisy[idx] = (labels[idx] + rng.integers(1, c, n_flip)) % c
    return noisy, idx


def precision_at(scores_desc_ids: np.ndarray, planted: np.ndarray) -> float:
    top = scores_desc_ids[:len(planted)]
    return len(set(top.tolist()) & set(planted.tolist())) / len(planted)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_classes=st.integers(3, 8), per_class=st.integers(12, 30),
       dim=st.integers(2, 16), n_flip=st.integers(1, 4))
@example(seed=2, n_classes=5, per_class=12, dim=3, n_flip=1)
def test_planted_errors_in_separated_clusters_rank_first(seed, n_classes, per_class, dim, n_flip):
    # "separated": every two centres at least 10 spreads apart (in 2-D, random centres can nearly
    # coincide, and then two classes are one cluster whose labels no method can tell apart)
    assume(centre_gap(seed, n_classes, dim) > 1.5)
    emb, labels = clustered(seed, n_classes, per_class, dim)
    noisy, planted = flip(labels, n_flip, seed)
    table = ov.find_label_issues(emb, noisy, k=8)
    assert sorted(table.index[:n_flip].tolist()) == sorted(planted.tolist())
    assert (table.loc[planted, "suggested_label"].to_numpy() == labels[planted]).all()
    assert (table.loc[planted, "given_label"].to_numpy() == noisy[planted]).all()
    clean = np.setdiff1d(np.arange(len(labels)), planted)
    assert table.loc[planted, "score"].min() > table.loc[clean, "score"].max()
    assert (table.loc[clean, "suggested_label"].to_numpy() == labels[clean]).all()


def test_table_shape_order_and_range():
    emb, labels = clustered(0, 5, 20, 6, spread=1.5)  # overlapping: many distinct scores and ties
    names = np.array(["cat", "dog", "eel", "fox", "gnu"], dtype=object)[labels]
    table = ov.find_label_issues(emb, names, k=5)
    assert list(table.columns) == ["score", "given_label", "suggested_label"]
    assert table.index.name == "item" and sorted(table.index) == list(range(len(labels)))
    s = table["score"].to_numpy()
    assert ((s >= 0) & (s <= 1)).all()
    ids = table.index.to_numpy()
    assert all(s[i] > s[i + 1] or (s[i] == s[i + 1] and ids[i] < ids[i + 1]) for i in range(len(s) - 1))
    assert (table["given_label"].to_numpy() == names[ids]).all()
    assert set(table["suggested_label"]) <= set(names)
    assert table.attrs["k"] == 5 and table.attrs["distance"] == "euclidean"


def test_same_sequence_items_do_not_vouch_for_each_other():
    """A mislabelled item with a copy in its own sequence (same wrong label) looks fine unless the
    sequence is excluded: then only the other items, which disagree, are its neighbours."""
    emb, labels = clustered(3, 4, 15, 5)
    emb = np.concatenate([emb, emb[[7]] + 1e-3, emb[[8]] + 1e-3])
    labels = np.concatenate([labels, labels[[7, 8]]])
    noisy = labels.copy()
    noisy[[7, 60]] = (labels[7] + 1) % 4  # item 7 and its copy 60 share the wrong label
    seq = np.arange(len(labels))
    seq[60] = 7
    plain = ov.find_label_issues(emb, noisy, k=3)
    with_seq = ov.find_label_issues(emb, noisy, k=3, sequence_ids=seq)
    assert plain.loc[7, "score"] < 0.5
    assert set(with_seq.index[:2]) == {7, 60}
    assert with_seq.loc[7, "score"] > 0.75 and with_seq.loc[7, "suggested_label"] == labels[7]


def overlapping(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 32)) * 1.6 / np.sqrt(2)
    labels = rng.integers(0, 20, n)
    emb = centres[labels] + rng.normal(size=(n, 32)) * rng.uniform(0.7, 1.3, 20)[labels, None] * 1.4
    return emb.astype(np.float32), labels


@pytest.mark.slow
def test_beats_a_plain_knn_vote_on_overlapping_classes():
    """Overlapping Gaussian classes, 3% flipped: the score's ranking is more precise than the
    fraction of disagreeing neighbours (whose many ties leave the order to chance)."""
    wins = 0
    for seed in range(3):
        emb, labels = overlapping(seed)
        noisy, planted = flip(labels, 90, seed)
        table = ov.find_label_issues(emb, noisy, k=10)
        ours = precision_at(table.index.to_numpy(), planted)
        res = ov.retrieve(emb, noisy, top_n=10)
        vote = knn_vote_scores(res)
        vote_order = np.lexsort((np.arange(len(vote)), -vote))
        wins += ours > precision_at(vote_order, planted)
        assert ours > 0.3  # chance is 0.03
    assert wins == 3


@pytest.mark.slow
def test_at_least_as_precise_as_cleanlab_datalab():
    """cleanlab's Datalab on the same features (its k-NN label issues, k=10 like ours)."""
    from cleanlab import Datalab

    emb, labels = overlapping(7)
    noisy, planted = flip(labels, 90, 7)
    lab = Datalab(pd.DataFrame({"y": noisy}), label_name="y", verbosity=0)
    lab.find_issues(features=emb, issue_types={"label": {"k": 10}})
    theirs = lab.get_issues("label")["label_score"].to_numpy()
    theirs_order = np.lexsort((np.arange(len(theirs)), theirs))  # lowest quality first
    ours = ov.find_label_issues(emb, noisy, k=10).index.to_numpy()
    assert precision_at(ours, planted) >= precision_at(theirs_order, planted)


def test_inputs_torch_cosine_and_sequences_with_none():
    emb, labels = clustered(1, 3, 10, 4)
    emb = emb + 10  # cosine distance stays meaningful away from the origin
    a = ov.find_label_issues(torch.from_numpy(emb), torch.from_numpy(labels), k=4, distance="cosine")
    b = ov.find_label_issues(emb, pd.Series(labels), k=4, distance="cosine",
                             sequence_ids=[None] * len(labels))
    pd.testing.assert_frame_equal(a, b)
    before = emb.copy()
    ov.find_label_issues(emb, labels, k=4)
    assert np.array_equal(emb, before)  # the caller's array is untouched


def test_bad_inputs_are_named():
    emb, labels = clustered(2, 2, 5, 3)
    with pytest.raises(ValueError, match=r"k=10 is above N - 1 = 9"):
        ov.find_label_issues(emb, labels, k=10)
    with pytest.raises(ValueError, match="k must be a positive int"):
        ov.find_label_issues(emb, labels, k=0)
    with pytest.raises(ValueError, match="labels has 9 values but embeddings has 10 rows"):
        ov.find_label_issues(emb, labels[:9], k=3)
    bad = emb.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[4\]"):
        ov.find_label_issues(bad, labels, k=3)
    with pytest.raises(ValueError, match=r"labels has missing values .* rows \[2\]"):
        ov.find_label_issues(emb, [0, 1, None, 0, 1, 0, 1, 0, 1, 0], k=3)
    with pytest.raises(ValueError, match="distance must be one of"):
        ov.find_label_issues(emb, labels, k=3, distance="manhattan")
