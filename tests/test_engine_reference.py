"""The engine against a brute-force reference on many random cases (hypothesis)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from engine_reference import fnmr, mean_metric, pcf, query_metric, reference
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import oml_viz as ov

METRICS = [("cmc", 1), ("cmc", 3), ("precision", 2), ("precision", 5), ("map", 1), ("map", 4)]


@st.composite
def cases(draw, distance: str):
    n = draw(st.integers(2, 30))
    dim = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if distance == "euclidean":
        # small integers: exact in float32 and full of exact ties
        emb = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    else:
        emb = rng.normal(size=(n, dim)).astype(np.float32)
    labels = rng.integers(0, draw(st.integers(1, 5)), size=n)
    mode = draw(st.sampled_from(["loo", "split", "random"]))
    if mode == "loo":
        is_query = is_gallery = np.ones(n, dtype=bool)
    elif mode == "split":
        is_query = rng.random(n) < 0.5
        is_query[0], is_query[-1] = True, False
        is_gallery = ~is_query
    else:
        is_query = rng.random(n) < 0.6
        is_gallery = rng.random(n) < 0.7
        is_query[0] = is_gallery[-1] = True
    seq = None
    if draw(st.booleans()):
        seq = [None if rng.random() < 0.3 else int(rng.integers(0, 4)) for _ in range(n)]
    top_n = draw(st.integers(5, 9))
    categories = rng.choice(["cat", "dog", "eel"], size=n)
    return emb, labels, is_query, is_gallery, seq, top_n, categories


def _no_near_ties(ref) -> bool:
    """Continuous (cosine) cases: a float32 engine and a float64 reference rank alike."""
    for pairs in ref["pairs"]:
        d = np.sort([p[0] for p in pairs])
        if len(d) > 1 and np.min(np.diff(d)) < 1e-4:
            return False
    return True


def _check(case, distance: str) -> None:
    emb, labels, is_query, is_gallery, seq, top_n, categories = case
    ref = reference(emb, labels, is_query, is_gallery, top_n, distance, seq)
    if distance == "cosine":
        assume(_no_near_ties(ref))
    res = ov.retrieve(emb, labels, is_query, is_gallery, top_n=top_n, distance=distance, sequence_ids=seq)

    np.testing.assert_array_equal(res.query_ids, ref["query_ids"])
    np.testing.assert_array_equal(res.retrieved_ids, ref["retrieved_ids"])
    np.testing.assert_allclose(res.distances, ref["distances"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.is_relevant, ref["is_relevant"])
    np.testing.assert_array_equal(res.n_gt, ref["n_gt"])

    fmr = (0.1, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = res.metrics(
            cmc_top_k=(1, 3), precision_top_k=(2, 5), map_top_k=(1, 4),
            fmr_vals=fmr, pcf_variance=(0.5, 0.9), categories=categories,
        )
    groups = {"OVERALL": np.ones(len(ref["query_ids"]), dtype=bool)}
    for name in sorted(set(categories[ref["query_ids"]])):
        groups[name] = categories[ref["query_ids"]] == name
    assert list(table.index) == list(groups)
    for kind, k in METRICS:
        per_q = [query_metric(kind, k, list(h), g) for h, g in zip(ref["is_relevant"], ref["n_gt"])]
        np.testing.assert_allclose(res.per_query(f"{kind}/{k}"), per_q, atol=1e-12)
        for name, mask in groups.items():
            expected = mean_metric([v for v, m in zip(per_q, mask) if m])
            np.testing.assert_allclose(table.loc[name, f"{kind}/{k}"], expected, atol=1e-12)
    for name, mask in groups.items():
        pairs = [p for p, m in zip(ref["pairs"], mask) if m]
        for p in fmr:
            expected, ambiguous = fnmr(pairs, p)
            if not ambiguous:
                np.testing.assert_allclose(table.loc[name, f"fnmr@fmr/{p}"], expected, atol=1e-12)
        items = np.ones(len(labels), dtype=bool) if name == "OVERALL" else categories == name
        for share in (0.5, 0.9):
            np.testing.assert_allclose(table.loc[name, f"pcf/{share}"], pcf(emb[items], share), atol=1e-12)


_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@_SETTINGS
@given(cases("euclidean"))
def test_euclidean_matches_reference(case):
    _check(case, "euclidean")


@_SETTINGS
@given(cases("cosine"))
def test_cosine_matches_reference(case):
    _check(case, "cosine")


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_batches_do_not_change_the_answer(batch_size):
    rng = np.random.default_rng(0)
    emb = rng.integers(-3, 4, size=(300, 4)).astype(np.float32)  # many exact ties
    labels = rng.integers(0, 7, size=300)
    seq = rng.integers(0, 50, size=300)
    ref = reference(emb, labels, np.ones(300, bool), np.ones(300, bool), 12, "euclidean", list(seq))
    res = ov.retrieve(emb, labels, top_n=12, sequence_ids=seq, batch_size=batch_size)
    np.testing.assert_array_equal(res.retrieved_ids, ref["retrieved_ids"])
    np.testing.assert_array_equal(res.n_gt, ref["n_gt"])


def test_large_gallery_uses_grouped_selection_exactly():
    # > 10 groups of 128 columns: the grouped top-k path, with heavy ties across groups
    rng = np.random.default_rng(1)
    emb = rng.integers(-1, 2, size=(2000, 3)).astype(np.float32)
    labels = rng.integers(0, 30, size=2000)
    ref = reference(emb[:], labels, np.arange(2000) < 60, np.ones(2000, bool), 10, "euclidean")
    res = ov.retrieve(emb, labels, np.arange(2000) < 60, top_n=10)
    np.testing.assert_array_equal(res.retrieved_ids, ref["retrieved_ids"])


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("batch_size", [1, 200, None])
def test_leave_one_out_in_chunks_matches_reference(distance, batch_size):
    # every item query and gallery, no sequences, several chunks and > 1 group of columns
    rng = np.random.default_rng(2)
    n = 700
    emb = rng.integers(-2, 3, size=(n, 3)).astype(np.float32)  # heavy exact ties
    if distance == "cosine":
        emb[np.abs(emb).sum(1) == 0] = 1
        emb = np.concatenate([emb[:350], emb[:350] * 2])  # duplicated directions: exact ties
    labels = rng.integers(0, 40, size=n)
    ref = reference(emb, labels, np.ones(n, bool), np.ones(n, bool), 10, distance)
    res = ov.retrieve(emb, labels, top_n=10, distance=distance, batch_size=batch_size)
    np.testing.assert_allclose(res.distances, ref["distances"], atol=1e-5)
    if distance == "euclidean":  # integer data: exact, so the tie order must match too
        np.testing.assert_array_equal(res.retrieved_ids, ref["retrieved_ids"])
    np.testing.assert_array_equal(res.n_gt, ref["n_gt"])
