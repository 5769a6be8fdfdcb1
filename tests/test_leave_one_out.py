"""The leave-one-out pass (each pair scored once) equals the row-by-row search and the definition, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_fast import _brute, _near_ties

import oml_viz as ov
from oml_viz.engine import candidates, leave_one_out, search
from oml_viz.engine.gemm import BACKENDS
from oml_viz.engine.search import unit_rows


def _both(emb, labels, backend, monkeypatch, block_bytes=1 << 16, expect_pass=True, **kw):
    """(leave-one-out result, row-by-row result), checking which path answered."""
    answered = []
    real = search.leave_one_out_search

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        answered.append(out is not None)
        return out

    with monkeypatch.context() as m:
        m.setattr(search, "_SYMMETRIC_MIN_PAIRS", 0)
        m.setattr(search, "filter_block_bytes", lambda: block_bytes)  # many blocks, some 128 rows high
        m.setattr(search, "leave_one_out_search", spy)
        m.setenv("OML_VIZ_GEMM", backend)
        m.setenv("OML_VIZ_SEARCH", "filter")
        loo = ov.retrieve(emb, labels, **kw)
        m.setenv("OML_VIZ_SEARCH", "filter-rows")
        rows = ov.retrieve(emb, labels, **kw)
    assert answered[:1] == ([] if expect_pass is None else [expect_pass])  # None: not even tried
    np.testing.assert_array_equal(loo.retrieved_ids, rows.retrieved_ids)
    np.testing.assert_array_equal(loo.distances.view(np.int32), rows.distances.view(np.int32))
    return loo


def _check_brute(res, emb, k, distance, is_item=None, seq=None):
    items = np.ones(len(emb), bool) if is_item is None else is_item
    ids, dist = _brute(emb, items, items, k, distance, seq)
    np.testing.assert_array_equal(res.retrieved_ids, ids)
    np.testing.assert_array_equal(res.distances.view(np.int32), dist.view(np.int32))


@pytest.mark.parametrize("backend", ["torch-bf16", "torch-fp32", "numpy-fp32"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_near_ties_at_the_bound(backend, distance, monkeypatch):
    emb, labels = _near_ties(n_queries=5, per_query=260)  # 1305 items: the last block is partly padding
    res = _both(emb, labels, backend, monkeypatch, top_n=10, distance=distance)
    _check_brute(res, emb, 10, distance)


@pytest.mark.parametrize("block_bytes", [1 << 16, 1 << 20, 1 << 26])
def test_far_from_the_origin_and_any_block_size(block_bytes, monkeypatch):
    emb, labels = _near_ties(n_queries=3, per_query=300, center=10.0, steps=(1e-4, 1e-5, 1e-6))
    res = _both(emb, labels, "torch-bf16", monkeypatch, block_bytes=block_bytes, top_n=10)
    _check_brute(res, emb, 10, "euclidean")


def test_duplicates_tie_by_id_across_both_views(monkeypatch):
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(900, 16)).astype(np.float32)
    emb[100:400] = emb[100]  # 300 copies across three groups, seen as rows and as columns
    emb[500:520] = emb[7]
    labels = rng.integers(0, 9, size=900)
    for distance in ("euclidean", "cosine"):
        res = _both(emb, labels, "torch-bf16", monkeypatch, top_n=12, distance=distance)
        _check_brute(res, emb, 12, distance)
    assert list(res.retrieved_ids[150][:5]) == [100, 101, 102, 103, 104]


@pytest.mark.parametrize("scale", [1e-15, 1e-3, 1e3])
def test_huge_and_tiny_norms(scale, monkeypatch):
    emb, labels = _near_ties(n_queries=3, per_query=200, scale=scale, seed=1)
    emb[5] *= 50  # one much longer vector: it widens the shared shift and the bound
    res = _both(emb, labels, "torch-bf16", monkeypatch, top_n=10)
    _check_brute(res, emb, 10, "euclidean")


def test_norms_too_large_for_a_shared_shift_go_row_by_row(monkeypatch):
    rng = np.random.default_rng(4)
    emb = (rng.normal(size=(300, 8)) * 1e17).astype(np.float32)
    res = _both(emb, rng.integers(0, 4, 300), "torch-bf16", monkeypatch, expect_pass=False, top_n=7)
    _check_brute(res, emb, 7, "euclidean")


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_sequences_and_a_shared_subset(distance, monkeypatch):
    emb, labels = _near_ties(n_queries=4, per_query=250, seed=2)
    rng = np.random.default_rng(5)
    seq = rng.integers(0, 60, size=len(emb))  # ~17 items a sequence: exclusions in both views
    items = rng.random(len(emb)) < 0.7  # queries and gallery: the same subset
    res = _both(emb, labels, "torch-bf16", monkeypatch, is_query=items, is_gallery=items, top_n=9,
                distance=distance, sequence_ids=seq)
    _check_brute(res, emb, 9, distance, items, seq)


@pytest.mark.parametrize("cap", [3, 40])
def test_rows_with_too_many_groups_or_candidates_go_row_by_row(cap, monkeypatch):
    emb, labels = _near_ties(n_queries=2, per_query=300, seed=6)
    emb[50:250] = emb[50]  # massive exact ties
    monkeypatch.setattr(candidates, "MAX_CANDIDATES", cap)
    res = _both(emb, labels, "torch-bf16", monkeypatch, top_n=10)
    _check_brute(res, emb, 10, "euclidean")


def test_fewer_items_than_k(monkeypatch):
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(9, 6)).astype(np.float32)
    seq = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6])
    res = _both(emb, rng.integers(0, 3, 9), "torch-bf16", monkeypatch, sequence_ids=seq, top_n=8)
    _check_brute(res, emb, 8, "euclidean", seq=seq)
    assert (res.retrieved_ids[0] == -1).sum() == 2 and (res.retrieved_ids[4] == -1).sum() == 0


@settings(max_examples=40, deadline=None)
@given(
    scale=st.sampled_from([1e-12, 1e-3, 1.0, 1e3, 1e12]),
    dim=st.integers(1, 64),
    distance=st.sampled_from(["euclidean", "cosine"]),
    backend=st.sampled_from(["torch-bf16", "torch-fp32"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_symmetric_bound_holds(scale, dim, distance, backend, seed):
    """|s~(i, j) - T(i, j)| <= B_sym + u' |s~| against float64 T = d^2 + C (cosine C - cos), whichever
    item is the query: the operands built as the leave-one-out pass builds them."""
    rng = np.random.default_rng(seed)
    v = torch.as_tensor(rng.normal(size=(130, dim)) * scale * rng.uniform(0.5, 2, size=(130, 1)), dtype=torch.float32)
    if distance == "cosine":
        v = unit_rows(v)
    be = BACKENDS[backend]
    finder = candidates.FilterSearch(v, torch.arange(130), distance, 3, be)
    vd = v.double()
    q_sq = (vd * vd).sum(1)
    norm = q_sq.sqrt()
    c, shift, bound = leave_one_out.shared_shift(finder, norm * (1 + 1e-12), q_sq)
    lhs = leave_one_out._operand_rows(finder, 130)
    lhs[:, :dim], lhs[:, dim + 2 :] = v, c
    approx = be.mm(lhs, finder._matrix(be)).double()[:, :130]
    real = (q_sq[:, None] + q_sq[None, :] - 2 * vd @ vd.T) if distance == "euclidean" else -(vd @ vd.T)
    constant = float((shift - (q_sq if distance == "euclidean" else 0)).mean())
    target = real + constant  # T: symmetric
    allowed = bound.at(norm.unsqueeze(1), norm.unsqueeze(0), shift.unsqueeze(1)) + bound.u_out * approx.abs()
    roles = bound.at(norm.unsqueeze(1), norm.unsqueeze(0), shift.unsqueeze(1))
    torch.testing.assert_close(roles, roles.T, rtol=1e-12, atol=0)  # the same bound for both roles
    assert bool((approx - target).abs().le(allowed).all())
    assert bool((approx > 0).all())


def test_a_table_over_the_budget_goes_row_by_row(monkeypatch):
    emb, labels = _near_ties(n_queries=2, per_query=300, seed=8)
    monkeypatch.setattr(search, "_SYMMETRIC_TABLE_BYTES", 1000)  # 602 items x 5 groups x 2 bytes > 1000
    res = _both(emb, labels, "torch-bf16", monkeypatch, expect_pass=None, top_n=5)
    _check_brute(res, emb, 5, "euclidean")
