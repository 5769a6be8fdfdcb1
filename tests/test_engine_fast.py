"""The filter-and-verify search equals the exact answer and the float32 path, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fnmr_fast import _reference as _fnmr_reference

import oml_viz as ov
from oml_viz.engine import candidates
from oml_viz.engine.gemm import BACKENDS, choose_backend, operand_rounding
from oml_viz.engine.search import exact_distances, unit_rows

FAST = ["torch-bf16", "numpy-fp32", "torch-fp32"]


def _retrieve(emb, labels, backend: str | None, monkeypatch, **kw):
    """retrieve() with the filter path on ``backend``, or the float32 single pass when None."""
    with monkeypatch.context() as m:
        if backend is None:
            m.setenv("OML_VIZ_SEARCH", "fp32")
        else:
            m.setenv("OML_VIZ_SEARCH", "filter")
            m.setenv("OML_VIZ_GEMM", backend)
        return ov.retrieve(emb, labels, **kw)


def _brute(emb, is_query, is_gallery, k, distance, seq=None):
    """The definition: k smallest (exact float32 distance, id), exact distances over all pairs."""
    x = torch.as_tensor(np.asarray(emb, dtype=np.float32))
    if distance == "cosine":
        x = unit_rows(x)
    seq = np.arange(len(x)) if seq is None else np.asarray(seq)
    gal, queries = np.flatnonzero(is_gallery), np.flatnonzero(is_query)
    rows = []
    for start in range(0, len(queries), 64):
        q = queries[start : start + 64]
        d = exact_distances(x[q], x[gal].unsqueeze(0).expand(len(q), -1, -1), distance).numpy()
        d = np.where(seq[gal][None, :] == seq[q][:, None], np.inf, d)  # excluded: +inf, dropped below
        rows.append(d)
    d = np.concatenate(rows)
    keys = (d.view(np.int32).astype(np.int64) << 32) | gal[None, :]
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    ids = gal[order]
    dist = np.take_along_axis(d, order, axis=1)
    ids[np.isinf(dist)] = -1
    pad = k - ids.shape[1]
    if pad > 0:
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
    return ids.astype(np.int64), dist.astype(np.float32)


def _assert_same(a, b):
    np.testing.assert_array_equal(a.retrieved_ids, b.retrieved_ids)
    np.testing.assert_array_equal(a.distances.view(np.int32), b.distances.view(np.int32))  # bit for bit


def _near_ties(n_queries=6, per_query=300, dim=24, scale=1.0, seed=0, center=0.3, steps=(1e-2, 1e-3, 1e-4, 1e-5)):
    """Around each query, items at radii 1 + j * step: spacings from 1e-2 down to 1e-5 (relative),
    i.e. well inside the bf16 bound, so the fast pass cannot order them and must verify. With
    centers near the origin the float32 single pass resolves them too."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_queries):
        middle = rng.normal(size=dim) * center
        rows.append(middle)
        step = steps[i % len(steps)]
        directions = rng.normal(size=(per_query, dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        radii = 1 + step * rng.permutation(per_query)
        rows.extend(middle + radii[:, None] * directions)
    emb = (np.array(rows) * scale).astype(np.float32)
    return emb, rng.integers(0, 5, size=len(emb))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_near_ties_at_the_bound_equal_the_fp32_path(backend, distance, monkeypatch):
    emb, labels = _near_ties()
    fast = _retrieve(emb, labels, backend, monkeypatch, top_n=10, distance=distance)
    ref = _retrieve(emb, labels, None, monkeypatch, top_n=10, distance=distance)
    _assert_same(fast, ref)
    ids, dist = _brute(emb, np.ones(len(emb), bool), np.ones(len(emb), bool), 10, distance)
    np.testing.assert_array_equal(fast.retrieved_ids, ids)
    np.testing.assert_array_equal(fast.distances, dist)


@pytest.mark.parametrize("backend", ["torch-bf16", "torch-fp32"])
def test_far_from_the_origin_the_answer_is_still_exact(backend, monkeypatch):
    # centers at |x| ~ 50 and spacings down to 1e-6: the augmented float32 score cancels badly
    # (the single float32 pass returns a farther item on some rows); the filter verifies exactly
    emb, labels = _near_ties(center=10.0, steps=(1e-4, 1e-5, 1e-6))
    fast = _retrieve(emb, labels, backend, monkeypatch, top_n=10)
    ids, dist = _brute(emb, np.ones(len(emb), bool), np.ones(len(emb), bool), 10, "euclidean")
    np.testing.assert_array_equal(fast.retrieved_ids, ids)
    np.testing.assert_array_equal(fast.distances.view(np.int32), dist.view(np.int32))


@pytest.mark.parametrize("backend", FAST)
def test_duplicates_tie_by_id(backend, monkeypatch):
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(900, 16)).astype(np.float32)
    emb[100:400] = emb[100]  # 300 copies: exact ties across three groups of columns
    emb[500:520] = emb[7]
    labels = rng.integers(0, 9, size=900)
    for distance in ("euclidean", "cosine"):
        fast = _retrieve(emb, labels, backend, monkeypatch, top_n=12, distance=distance)
        _assert_same(fast, _retrieve(emb, labels, None, monkeypatch, top_n=12, distance=distance))
    assert list(fast.retrieved_ids[150][:5]) == [100, 101, 102, 103, 104]


@pytest.mark.parametrize("scale", [1e-15, 1e-3, 1e3, 1e14])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_huge_and_tiny_norms(scale, distance, monkeypatch):
    emb, labels = _near_ties(n_queries=3, per_query=200, scale=scale, seed=1)
    emb[5] *= 50  # one much longer vector among them
    fast = _retrieve(emb, labels, "torch-bf16", monkeypatch, top_n=10, distance=distance)
    _assert_same(fast, _retrieve(emb, labels, None, monkeypatch, top_n=10, distance=distance))


@pytest.mark.parametrize("scale", [1e-21, 1e17])
def test_extreme_norms_take_the_exact_fallbacks(scale, monkeypatch):
    # 1e-21: squares in the subnormal range, the bound is all slack; 1e17: scores near the sentinels
    rng = np.random.default_rng(4)
    emb = (rng.normal(size=(300, 8)) * scale).astype(np.float32)
    labels = rng.integers(0, 4, size=300)
    is_query = np.arange(300) < 40
    fast = _retrieve(emb, labels, "torch-bf16", monkeypatch, is_query=is_query, top_n=7)
    ids, dist = _brute(emb, is_query, np.ones(300, bool), 7, "euclidean")
    np.testing.assert_array_equal(fast.retrieved_ids, ids)
    np.testing.assert_array_equal(fast.distances, dist)


@pytest.mark.parametrize("backend", ["torch-bf16", "torch-fp32"])
def test_sequences_and_splits(backend, monkeypatch):
    emb, labels = _near_ties(n_queries=4, per_query=250, seed=2)
    n = len(emb)
    rng = np.random.default_rng(5)
    seq = rng.integers(0, 60, size=n)
    is_query = rng.random(n) < 0.4
    is_gallery = rng.random(n) < 0.8
    for distance in ("euclidean", "cosine"):
        kw = dict(is_query=is_query, is_gallery=is_gallery, top_n=9, distance=distance, sequence_ids=seq)
        fast = _retrieve(emb, labels, backend, monkeypatch, **kw)
        _assert_same(fast, _retrieve(emb, labels, None, monkeypatch, **kw))
        ids, dist = _brute(emb, is_query, is_gallery, 9, distance, seq)
        np.testing.assert_array_equal(fast.retrieved_ids, ids)


def test_rows_with_too_many_candidates_fall_back_exactly(monkeypatch):
    emb, labels = _near_ties(n_queries=2, per_query=300, seed=6)
    emb[50:250] = emb[50]  # massive exact ties
    ref = _retrieve(emb, labels, None, monkeypatch, top_n=10, batch_size=97)
    for cap in (3, 40):  # 3: everything goes to the float32 stage, then to exact pieces
        monkeypatch.setattr(candidates, "MAX_CANDIDATES", cap)
        fast = _retrieve(emb, labels, "torch-bf16", monkeypatch, top_n=10, batch_size=97)
        _assert_same(fast, ref)


def test_fewer_items_than_k_and_empty_rows(monkeypatch):
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(400, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=400)
    seq = np.zeros(400, dtype=int)
    seq[:5] = 1  # gallery 0..7: items 0..4 see 3 gallery items, every other item sees 5
    is_gallery = np.arange(400) < 8
    kw = dict(is_gallery=is_gallery, sequence_ids=seq, top_n=6)
    fast = _retrieve(emb, labels, "torch-bf16", monkeypatch, **kw)
    _assert_same(fast, _retrieve(emb, labels, None, monkeypatch, **kw))
    assert (fast.retrieved_ids[10] == -1).sum() == 1 and np.isinf(fast.distances[10, -1])


@settings(max_examples=40, deadline=None)
@given(
    scale=st.sampled_from([1e-12, 1e-3, 1.0, 1e3, 1e12]),
    dim=st.integers(1, 64),
    distance=st.sampled_from(["euclidean", "cosine"]),
    backend=st.sampled_from(["torch-bf16", "torch-fp32", "cuda-tf32"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_score_bound_holds(scale, dim, distance, backend, seed):
    """|s~ - (s + c)| <= B_in + u' |s~| against float64 scores, on the operands as the engine builds them."""
    rng = np.random.default_rng(seed)
    q = torch.as_tensor(rng.normal(size=(7, dim)) * scale, dtype=torch.float32)
    g = torch.as_tensor(rng.normal(size=(130, dim)) * scale * rng.uniform(0.5, 2, size=(130, 1)),
                        dtype=torch.float32)
    if distance == "cosine":
        q, g = unit_rows(q), unit_rows(g)
    be = BACKENDS[backend]
    if backend == "cuda-tf32":  # emulate TF32 operands on the CPU: 10 stored bits, round to nearest
        be = candidates.Backend("tf32-emulated", torch.float32, "torch", 2.0**-11, 0.0)
    finder = candidates.FilterSearch(g, torch.arange(130), distance, 3, be)
    bound = finder.bound(be, operand_rounding(be, q))  # the rounding measured on these rows
    q_norm = q.double().norm(dim=1)
    shift = finder._shift(bound, q_norm, q.double().pow(2).sum(1))
    lhs = finder.query_operand(q, shift, torch.float32)
    rhs = finder._matrix(be)
    if be.name == "tf32-emulated":
        lhs, rhs = _tf32(lhs), _tf32(rhs)
    approx = be.mm(be.prepare(lhs), rhs).double()[:, :130]
    qd, gd = q.double(), g.double()
    exact = (gd * gd).sum(1) - 2 * qd @ gd.T if distance == "euclidean" else -(qd @ gd.T)
    exact = exact + shift.unsqueeze(1)
    allowed = bound.at(q_norm.unsqueeze(1), gd.norm(dim=1).unsqueeze(0), shift.unsqueeze(1))
    allowed = allowed + bound.u_out * approx.abs()
    assert bool((approx - exact).abs().le(allowed).all())
    assert bool((approx > 0).all())  # the shift makes every score positive


def test_measured_rounding_bound_holds_when_every_element_rounds_the_same_way():
    """The worst case for the measured-ratio bound: every element of parallel rows loses almost u_in in
    the same direction, so the dot product's error reaches ~2 u_in |q||g|, and the ratio measured on the
    rows (not a fixed factor) must account for it (euclidean: cosine's unit rows lose the pattern)."""
    distance = "euclidean"
    rng = np.random.default_rng(3)
    dim = 96
    exps = rng.integers(-3, 4, size=dim)
    row = torch.as_tensor((1 + 2.0**-8 - 2.0**-16) * 2.0**exps, dtype=torch.float32)  # rounds down by ~u
    q = row.repeat(4, 1) * torch.tensor([[1.0], [2.0], [4.0], [0.5]])
    g = row.repeat(130, 1)
    be = BACKENDS["torch-bf16"]
    finder = candidates.FilterSearch(g, torch.arange(130), distance, 3, be)
    rho_q = operand_rounding(be, q)
    assert rho_q > 0.9 * 2.0**-8 and finder.operand_ratio(be) > 0.9 * 2.0**-8  # measured, not assumed
    bound = finder.bound(be, rho_q)
    q_norm = q.double().norm(dim=1)
    shift = finder._shift(bound, q_norm, q.double().pow(2).sum(1))
    approx = be.mm(be.prepare(finder.query_operand(q, shift, torch.float32)), finder._matrix(be)).double()[:, :130]
    qd, gd = q.double(), g.double()
    exact = (gd * gd).sum(1) - 2 * qd @ gd.T + shift.unsqueeze(1)
    g_norm = gd.norm(dim=1).unsqueeze(0)
    allowed = bound.at(q_norm.unsqueeze(1), g_norm, shift.unsqueeze(1)) + bound.u_out * approx.abs()
    error = (approx - exact).abs()
    assert bool(error.le(allowed).all())
    assert float(error.max()) > 0.5 * float((bound.alpha * q_norm.unsqueeze(1) * g_norm).max())  # near-tight


def _tf32(x: torch.Tensor) -> torch.Tensor:
    bits = x.contiguous().view(torch.int32)
    rounded = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF  # round to nearest even on 13 dropped bits
    return rounded.view(torch.float32)


def test_backend_is_measured_once_and_can_be_forced(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("OML_VIZ_GEMM", raising=False)
    first = choose_backend(cpu)
    assert first.name in BACKENDS and choose_backend(cpu) is first
    assert choose_backend(cpu, measure=False).name == "torch-fp32"
    monkeypatch.setenv("OML_VIZ_GEMM", "numpy-fp32")
    assert choose_backend(cpu).name == "numpy-fp32"
    monkeypatch.setenv("OML_VIZ_GEMM", "fp64")
    with pytest.raises(ValueError, match="OML_VIZ_GEMM"):
        choose_backend(cpu)


def test_unknown_search_method_is_an_error(monkeypatch):
    monkeypatch.setenv("OML_VIZ_SEARCH", "approximate")
    with pytest.raises(ValueError, match="method"):
        ov.retrieve(np.eye(3, dtype=np.float32), [0, 1, 1])


@pytest.mark.parametrize(
    "distance, offset, rounding",
    [("euclidean", 0.0, False), ("cosine", 0.0, False), ("euclidean", 0.0, True), ("euclidean", 5e4, False)],
)
def test_fnmr_windows_are_exact(distance, offset, rounding):
    from oml_viz.engine import fnmr, fnmr_windows

    rng = np.random.default_rng(8)
    n = 900
    v = torch.as_tensor(rng.normal(size=(n, 12)).astype(np.float32))
    if rounding:
        v = torch.round(v * 2)  # exact ties everywhere
    v = v * (1000 if offset else 1) + offset  # far from the origin: the product cancels badly
    if distance == "cosine":
        v = unit_rows(v)
    ids = np.arange(n)
    labels, seq, groups = rng.integers(0, 15, n), rng.integers(0, 400, n), rng.integers(0, 3, n)
    ps = [0.001, 0.1, 0.5]
    args = (v, ids, ids, labels, seq, groups, 3, ps, distance, torch.device("cpu"))
    fast = fnmr_windows.fnmr_windows(fnmr.FnmrTask(*args))
    assert fast is not None
    np.testing.assert_array_equal(fast, _fnmr_reference(v, labels, groups, 3, ps, distance, seq))


def test_fnmr_falls_back_to_the_histogram_algorithm(monkeypatch):
    from oml_viz.engine import fnmr

    rng = np.random.default_rng(9)
    emb = rng.normal(size=(400, 6)).astype(np.float32)
    labels, cats = rng.integers(0, 8, 400), rng.choice(["a", "b"], 400)
    res = ov.retrieve(emb, labels, categories=cats)
    fast = res.metrics(fmr_vals=(0.05, 0.3))
    calls = []
    real = fnmr.fnmr_two_pass.fnmr_two_pass
    monkeypatch.setattr(fnmr.fnmr_single_pass, "fnmr_single_pass", lambda task: None)  # could not decide
    monkeypatch.setattr(fnmr, "_MAX_RELEVANT", 0)  # and too many relevant pairs to list for the windows
    monkeypatch.setattr(fnmr.fnmr_two_pass, "fnmr_two_pass", lambda task: calls.append(1) or real(task))
    slow = res.metrics(fmr_vals=(0.05, 0.3))
    assert calls
    np.testing.assert_array_equal(fast.to_numpy(), slow.to_numpy())


@pytest.mark.parametrize("sizes, expected_mb", [(["48K", "2048K", "32768K"], 24), (["256M"], 48), (["1024K"], 8), ([], 24)])
def test_filter_block_follows_the_largest_cache(tmp_path, monkeypatch, sizes, expected_mb):
    from oml_viz.engine import search

    paths = []
    for i, size in enumerate(sizes):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "size").write_text(size + "\n")
        paths.append(str(tmp_path / f"index{i}" / "size"))
    monkeypatch.setattr(search.glob, "glob", lambda pattern: paths)
    search.filter_block_bytes.cache_clear()
    try:
        assert search.filter_block_bytes() == expected_mb * 2**20
    finally:
        search.filter_block_bytes.cache_clear()
