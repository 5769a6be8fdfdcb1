"""``ov.compare``: per-query deltas and changed queries against brute force, the statistics'
coverage and calibration on simulated paired data, and every bad input."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from engine_reference import mean_metric, query_metric
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oml_viz as ov
from oml_viz.analysis.paired import paired_bootstrap, sign_flip_pvalue

METRICS = ("cmc/1", "cmc/3", "precision/2", "map/3", "map/5")


@st.composite
def pairs(draw):
    """Two results over the same random items (ties, sequences, no-GT queries, categories)."""
    n = draw(st.integers(3, 28))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    emb_a = rng.integers(-2, 3, size=(n, 2)).astype(np.float32)  # small ints: exact ties
    emb_b = rng.integers(-2, 3, size=(n, 2)).astype(np.float32)
    labels = rng.integers(0, draw(st.integers(1, 6)), size=n)
    if draw(st.booleans()):
        labels = np.array([f"l{v}" for v in labels], dtype=object)
    is_query = rng.random(n) < 0.7
    is_gallery = rng.random(n) < 0.8
    is_query[0] = is_gallery[-1] = True
    seq = None
    if draw(st.booleans()):
        seq = [None if rng.random() < 0.3 else int(rng.integers(0, 4)) for _ in range(n)]
    cats = rng.choice(["cat", "dog", "eel"], size=n)
    kw = dict(sequence_ids=seq, categories=cats, progress=False)
    a = ov.retrieve(emb_a, labels, is_query, is_gallery, top_n=draw(st.integers(5, 8)), **kw)
    b = ov.retrieve(emb_b, labels, is_query, is_gallery, top_n=draw(st.integers(5, 8)),
                    distance=draw(st.sampled_from(["euclidean", "cosine"])) if emb_b.any(1).all() else "euclidean",
                    **kw)
    return a, b, cats


def _ref_values(res, metric):
    kind, k = metric.split("/")
    return np.array([query_metric(kind, int(k), list(res.is_relevant[r]), int(res.n_gt[r]))
                     for r in range(len(res.query_ids))])


_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(pairs(), st.sampled_from(METRICS))
def test_per_query_deltas_match_brute_force(case, metric):
    a, b, _ = case
    cmp = ov.compare(a, b, names=("old", "new"))
    ref = _ref_values(b, metric) - _ref_values(a, metric)
    got = cmp.per_query(metric)
    assert got.shape == (len(a.query_ids),)
    np.testing.assert_array_equal(np.isnan(got), a.n_gt == 0)
    np.testing.assert_allclose(got, ref, atol=1e-12)


@_SETTINGS
@given(pairs(), st.sampled_from(METRICS), st.sampled_from(["regressed", "improved", "changed"]),
       st.integers(0, 30), st.sampled_from([None, "cat", "dog", "eel"]))
def test_changed_ids_and_order_match_brute_force(case, metric, kind, n, category):
    a, b, cats = case
    cmp = ov.compare(a, b)
    delta = _ref_values(b, metric) - _ref_values(a, metric)
    entries = []
    for r, qid in enumerate(a.query_ids):
        d = delta[r]
        if np.isnan(d) or (category is not None and cats[qid] != category):
            continue
        size = {"regressed": -d, "improved": d, "changed": abs(d)}[kind]
        if size > 0:
            entries.append((-size, int(qid)))
    expected = [qid for _, qid in sorted(entries)][:n]
    if category is not None and not (cats[a.query_ids] == category).any():
        with pytest.raises(ValueError, match="has no queries"):
            cmp.changed(metric, kind, n, category)
        return
    assert cmp.changed(metric, kind, n, category).tolist() == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_table_means_and_deltas_match_brute_force(case):
    a, b, cats = case
    cmp = ov.compare(a, b, names=("base", "new"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = cmp.table(metrics=("cmc/1", "map/5"), n_boot=100, seed=1)
        ma, mb = a.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(5,)), b.metrics(
            cmc_top_k=(1,), precision_top_k=(), map_top_k=(5,))
    assert list(t.index) == list(ma.index)  # OVERALL then the categories of the queries, sorted
    for metric in ("cmc/1", "map/5"):
        va, vb = _ref_values(a, metric), _ref_values(b, metric)
        for group in t.index:
            rows = np.ones(len(a.query_ids), bool) if group == "OVERALL" else cats[a.query_ids] == group
            np.testing.assert_allclose(t.loc[group, f"{metric}/base"], mean_metric(list(va[rows])), atol=1e-12)
            np.testing.assert_allclose(t.loc[group, f"{metric}/new"], mean_metric(list(vb[rows])), atol=1e-12)
            np.testing.assert_allclose(t.loc[group, f"{metric}/delta"],
                                       mean_metric(list(vb[rows] - va[rows])), atol=1e-12)
        np.testing.assert_allclose(t[f"{metric}/base"].to_numpy(float), ma[metric].to_numpy(float), atol=1e-12)
        np.testing.assert_allclose(t[f"{metric}/new"].to_numpy(float), mb[metric].to_numpy(float), atol=1e-12)
        valid = ~t[f"{metric}/delta"].isna()
        assert ((t[f"{metric}/ci_low"] <= t[f"{metric}/ci_high"]) | ~valid).all()
        p = t[f"{metric}/p_value"][valid]
        assert ((p > 0) & (p <= 1)).all()


def test_table_columns_and_determinism():
    a, b, cats = _two_models(q=300, seed=3)
    cmp = ov.compare(a, b, names=("baseline", "new"))
    t1 = cmp.table(metrics=("cmc/1", "map/5"), n_boot=200, seed=7)
    t2 = cmp.table(metrics=("cmc/1", "map/5"), n_boot=200, seed=7)
    t3 = cmp.table(metrics=("cmc/1", "map/5"), n_boot=200, seed=8)
    expected = [f"{m}/{c}" for m in ("cmc/1", "map/5")
                for c in ("baseline", "new", "delta", "ci_low", "ci_high", "p_value")]
    assert list(t1.columns) == expected
    assert list(t1.index) == ["OVERALL", "a", "b", "c"]
    assert t1.equals(t2)
    assert not t1[["map/5/ci_low", "map/5/ci_high"]].equals(t3[["map/5/ci_low", "map/5/ci_high"]])
    # b is much better: the intervals exclude 0 and the test rejects
    assert (t1["cmc/1/ci_low"] > 0).all() and (t1["cmc/1/p_value"] < 0.01).all()
    assert (t1["cmc/1/ci_low"] <= t1["cmc/1/delta"]).all() and (t1["cmc/1/delta"] <= t1["cmc/1/ci_high"]).all()
    # the same queries are resampled for both models: a model against itself has a zero-width interval
    same = ov.compare(a, a, names=("x", "y")).table(metrics="map/5", n_boot=100)
    assert (same["map/5/ci_low"] == 0).all() and (same["map/5/ci_high"] == 0).all()
    assert (same["map/5/p_value"] == 1).all()


def _two_models(q: int, seed: int):
    """b's embeddings separate the labels well, a's barely."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, q // 4, size=q)
    centres = rng.normal(size=(q // 4, 8))
    emb_b = centres[labels] + 0.3 * rng.normal(size=(q, 8))
    emb_a = centres[labels] + 1.5 * rng.normal(size=(q, 8))
    cats = np.array(["a", "b", "c"])[labels % 3]
    kw = dict(top_n=5, categories=cats, progress=False)
    return ov.retrieve(emb_a, labels, **kw), ov.retrieve(emb_b, labels, **kw), cats


# ----------------------------------------------------------------------- statistics
def _plain_bootstrap(d, n_boot, seed):
    """Per-resample loop: the textbook paired bootstrap."""
    rng = np.random.default_rng(seed)
    means = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(n_boot)]
    return np.quantile(means, [0.025, 0.975])


@pytest.mark.parametrize("discrete", [False, True])
def test_bootstrap_matches_a_plain_loop_in_distribution(discrete):
    rng = np.random.default_rng(0)
    d = rng.normal(0.1, 1.0, size=400)
    if discrete:  # few distinct values: the multinomial-over-distinct-values path
        d = np.round(d)
    low, high = paired_bootstrap(d[:, None], [np.arange(len(d))], n_boot=20000, seed=1)
    ref = _plain_bootstrap(d, 20000, 2)
    width = ref[1] - ref[0]
    assert abs(low[0, 0] - ref[0]) < 0.03 * width and abs(high[0, 0] - ref[1]) < 0.03 * width


def test_sign_flip_exact_matches_enumeration():
    rng = np.random.default_rng(5)
    for trial in range(30):
        m = int(rng.integers(1, 10))
        d = np.round(rng.normal(0.3, 1, size=(m, 2)), 1)  # rounded: ties among flipped sums
        d[rng.random(m) < 0.2] = 0.0
        p = sign_flip_pvalue(d, [np.arange(m)], n_perm=1024, seed=0)[0]
        for j in range(2):
            x = d[:, j][d.any(axis=1)]
            if len(x) == 0:
                assert p[j] == 1.0
                continue
            obs = abs(x.sum())
            sums = [abs(np.dot(s, x)) for s in itertools.product([1, -1], repeat=len(x))]
            assert p[j] == pytest.approx(np.mean([s >= obs - 1e-9 for s in sums]), abs=1e-12), trial


@pytest.mark.parametrize("discrete", [False, True])
def test_sign_flip_monte_carlo_matches_exact_distribution(discrete):
    rng = np.random.default_rng(1)
    d = rng.normal(0.25, 1, size=(40, 1))
    if discrete:
        d = np.round(d)
    # exact two-sided p by the normal approximation's large-sample reference: many patterns
    p_mc = sign_flip_pvalue(d, [np.arange(40)], n_perm=50000, seed=3)[0, 0]
    signs = rng.choice([-1.0, 1.0], size=(200000, 40))
    ref = np.mean(np.abs(signs @ d[:, 0]) >= abs(d.sum()) - 1e-9)
    assert abs(p_mc - ref) < 0.01


def _coverage(sample, true_delta, reps=400, q=200, n_boot=1000):
    hits = 0
    for rep in range(reps):
        d = sample(np.random.default_rng(rep), q)
        low, high = paired_bootstrap(d[:, None], [np.arange(q)], n_boot=n_boot, seed=rep)
        hits += low[0, 0] <= true_delta <= high[0, 0]
    return hits / reps


def test_bootstrap_interval_covers_the_true_difference_95_percent():
    """400 seeded repetitions of paired per-query metrics with a known mean difference."""
    def continuous(rng, q):  # map-like: per-query difficulty shared by both models
        difficulty = rng.beta(2, 2, q)
        a = np.clip(difficulty + rng.normal(0, 0.15, q), 0, 1)
        b = np.clip(difficulty + 0.05 + rng.normal(0, 0.15, q), 0, 1)
        return b - a

    def binary(rng, q):  # cmc/1: a hit for a with 0.6, b keeps a's outcome or redraws with 0.75
        a = rng.random(q) < 0.6
        b = np.where(rng.random(q) < 0.5, a, rng.random(q) < 0.75)
        return b.astype(float) - a.astype(float)

    # the binary case's true difference: 0.5 * 0.6 + 0.5 * 0.75 - 0.6
    cover_binary = _coverage(binary, 0.5 * 0.6 + 0.5 * 0.75 - 0.6)
    rng = np.random.default_rng(99)
    truth = continuous(rng, 2_000_000).mean()  # the clipped model's mean, to ~1e-4
    cover_continuous = _coverage(continuous, truth)
    assert 0.93 <= cover_binary <= 0.97, cover_binary
    assert 0.93 <= cover_continuous <= 0.97, cover_continuous


def test_sign_flip_pvalue_is_uniform_under_no_difference():
    """400 seeded repetitions where a and b are exchangeable per query: p ~ U(0, 1).

    Tolerances: Kolmogorov-Smirnov distance to U(0, 1) below 0.08 (its 1% critical value for 400
    draws is 0.081), and between 2% and 8% of p-values below 0.05."""
    ps = []
    for rep in range(400):
        rng = np.random.default_rng(20_000 + rep)
        difficulty = rng.beta(2, 2, 150)
        a = difficulty + rng.normal(0, 0.2, 150)
        b = difficulty + rng.normal(0, 0.2, 150)
        ps.append(sign_flip_pvalue((b - a)[:, None], [np.arange(150)], n_perm=1000, seed=rep)[0, 0])
    ps = np.sort(ps)
    grid = np.arange(1, 401) / 400
    ks = max(np.max(grid - ps), np.max(ps - (grid - 1 / 400)))
    assert ks < 0.08, ks
    assert 0.02 <= np.mean(ps < 0.05) <= 0.08
    # and it has power: a real difference of half a noise SD is found nearly always
    rng = np.random.default_rng(1)
    d = rng.normal(0.1, 0.2, size=(150, 1))
    assert sign_flip_pvalue(d, [np.arange(150)], 1000, 0)[0, 0] < 0.01


# ----------------------------------------------------------------------- bad input
def test_results_over_different_items_are_refused():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 3))
    labels = np.arange(10) % 3
    base = ov.retrieve(emb, labels, progress=False)
    with pytest.raises(ValueError, match="different items: 10 vs 9 items"):
        ov.compare(base, ov.retrieve(emb[:9], labels[:9], progress=False))
    other = labels.copy()
    other[[4, 7]] = 5
    with pytest.raises(ValueError, match=r"labels differs in rows \[4, 7\]"):
        ov.compare(base, ov.retrieve(emb, other, progress=False))
    q = np.ones(10, bool)
    q[2] = False
    with pytest.raises(ValueError, match=r"is_query differs in rows \[2\]"):
        ov.compare(base, ov.retrieve(emb, labels, q, progress=False))
    with pytest.raises(ValueError, match=r"is_gallery differs in rows \[2\]"):
        ov.compare(base, ov.retrieve(emb, labels, None, q, progress=False))
    with pytest.raises(ValueError, match="sequence_ids"):
        ov.compare(base, ov.retrieve(emb, labels, sequence_ids=np.arange(10) // 2, progress=False))
    # the same grouping under other names is the same items; top_n and distance may differ
    s1 = ov.retrieve(emb, labels, sequence_ids=np.arange(10) // 2, progress=False)
    s2 = ov.retrieve(emb, labels, sequence_ids=[f"s{i // 2}" for i in range(10)], top_n=3, distance="cosine",
                     progress=False)
    ov.compare(s1, s2)
    with pytest.raises(TypeError, match="res_b must be a RetrievalResult"):
        ov.compare(base, emb)
    with pytest.raises(ValueError, match="names must be two distinct"):
        ov.compare(base, base, names=("x", "x"))


def test_bad_metric_k_n_boot_and_category_are_refused():
    a, b, _ = _two_models(q=60, seed=1)
    a3 = ov.retrieve(a.embeddings, a.labels, top_n=3, categories=a.categories, progress=False)
    cmp = ov.compare(a3, b, names=("base", "new"))
    with pytest.raises(ValueError, match="unknown metric 'mrr/5'"):
        cmp.table(metrics=("mrr/5",))
    with pytest.raises(ValueError, match=r"k=5 above the top_n=3 of result 'base'"):
        cmp.per_query("map/5")
    with pytest.raises(ValueError, match=r"k=5 above the top_n=3 of result 'base'"):
        cmp.table(metrics=("cmc/1", "map/5"))
    with pytest.raises(ValueError, match="n_boot must be an int >= 100"):
        cmp.table(metrics=("cmc/1",), n_boot=99)
    with pytest.raises(ValueError, match="n_perm must be an int >= 100"):
        cmp.table(metrics=("cmc/1",), n_perm=10)
    with pytest.raises(ValueError, match=r"category 'zebra' has no queries; categories are \['a', 'b', 'c'\]"):
        cmp.changed("cmc/1", category="zebra")
    with pytest.raises(ValueError, match="kind must be one of"):
        cmp.changed("cmc/1", kind="worse")
    with pytest.raises(ValueError, match="categories has 3 values"):
        cmp.table(metrics=("cmc/1",), categories=["x", "y", "z"])
    plain = ov.compare(ov.retrieve(a.embeddings, a.labels, progress=False),
                       ov.retrieve(b.embeddings, b.labels, progress=False))
    with pytest.raises(ValueError, match="no categories"):
        plain.changed("cmc/1", category="a")


def test_no_ground_truth_queries_are_left_out_with_a_warning():
    emb = np.array([[0.0], [0.1], [1.0], [1.1], [5.0]])
    labels = [0, 0, 1, 1, 2]  # item 4 has no relevant gallery item
    a = ov.retrieve(emb, labels, top_n=2, progress=False)
    b = ov.retrieve(emb[::-1].copy(), labels, top_n=2, progress=False)
    cmp = ov.compare(a, b)
    assert np.isnan(cmp.per_query("cmc/1")[4])
    with pytest.warns(UserWarning, match="1 of 5 queries have no ground truth"):
        t = cmp.table(metrics="cmc/1", n_boot=100)
    assert t.loc["OVERALL", "cmc/1/a"] == 1.0
    assert 4 not in cmp.changed("cmc/1", "changed", n=None)


# ----------------------------------------------------------------------- the compared grid
def _item_images(n):
    """Solid images: the centre pixel tells the item."""
    return [np.full((24 + i % 5, 30, 3), ((37 * i) % 256, (91 * i + 40) % 256, (53 * i + 90) % 256), np.uint8)
            for i in range(n)]


def test_compared_grid_shows_both_models_results_by_pixel():
    from oml_viz.render import NOT_RELEVANT_COLOR, QUERY_COLOR, RELEVANT_COLOR, ComparedQueriesDisplay

    a, b, cats = _two_models(q=60, seed=2)
    cmp = ov.compare(a, b, names=("old", "new"))
    images = _item_images(a.n_items)
    ids = cmp.changed("map/5", "improved", n=3)
    assert len(ids) == 3
    disp = ComparedQueriesDisplay.from_comparison(cmp, images, kind="improved", metric="map/5", n_queries=3,
                                                  n_instances=4).plot()
    arr = ov.figure_to_array(disp.figure_)
    layout = disp.layout_
    assert layout.n_cols == 1 + 4 + 4
    for r, qid in enumerate(ids):
        row = int(np.searchsorted(a.query_ids, qid))
        expected = [(0, int(qid), QUERY_COLOR)]
        for offset, res in ((1, a), (5, b)):
            for c in range(4):
                rel = res.is_relevant[row, c]
                expected.append((offset + c, int(res.retrieved_ids[row, c]),
                                 RELEVANT_COLOR if rel else NOT_RELEVANT_COLOR))
        for col, item, frame in expected:
            x0, y0, x1, y1 = layout.tile_box(r, col)
            tile = arr[y0:y1, x0:x1]
            assert tuple(tile[1, tile.shape[1] // 2]) == frame
            assert tuple(tile[tile.shape[0] // 2, tile.shape[1] // 2]) == tuple(images[item][0, 0])
        query_tile = [t for t in disp.tiles_ if t.row == r and t.col == 0][0]
        va, vb = cmp.values("map/5")
        assert f"map/5  {va[row]:.2f}→{vb[row]:.2f}" in query_tile.title.replace("\n", "  ")
    # each group is headed with its model's name: ink above the group's first tile column
    head = arr[layout.header_h - 22: layout.header_h]
    for first in (1, 5):
        x0, x1 = layout.col_x(first), layout.col_x(first + 3) + layout.tile
        assert (head[:, x0:x1] < 100).any()
    assert disp.title.startswith("3 queries new better than old by map/5")


def test_plot_compared_queries_figure_and_errors():
    a, b, cats = _two_models(q=40, seed=4)
    cmp = ov.compare(a, b)
    images = _item_images(a.n_items)
    fig = ov.plot_compared_queries(cmp, images, kind="changed", metric="cmc/1", n_queries=2, n_instances=3,
                                   category="a")
    assert ov.figure_to_array(fig).shape[2] == 3
    with pytest.raises(ValueError, match="has no queries"):
        ov.plot_compared_queries(cmp, images, category="nope")
    with pytest.raises(ValueError, match="images holds 3 items"):
        ov.plot_compared_queries(cmp, images[:3])
    with pytest.raises(ValueError, match="kind must be one of"):
        ov.plot_compared_queries(cmp, images, kind="worse")
    # nothing changed: an empty grid that says so, not an error
    same = ov.compare(a, a)
    fig = ov.plot_compared_queries(same, images, kind="regressed")
    assert ov.figure_to_array(fig).size > 0


def test_compared_grid_title_sits_above_the_model_names():
    from oml_viz.render import ComparedQueriesDisplay

    a, b, _ = _two_models(q=60, seed=2)
    cmp = ov.compare(a, b, names=("old", "new"))
    images = _item_images(a.n_items)
    long_title = "queries new worse than old by map/5 - page 1/42 " * 3  # reaches over both groups
    disp = ComparedQueriesDisplay.from_comparison(cmp, images, kind="changed", metric="map/5", n_queries=2,
                                                  n_instances=4, title=long_title).plot()
    arr = ov.figure_to_array(disp.figure_)
    layout = disp.layout_
    band_top = layout.header_h - 22  # the models' names live in [band_top, header_h)
    title_ink = np.flatnonzero((arr[:band_top, :, :3] < 100).all(axis=2).any(axis=1))
    assert len(title_ink), "the title is drawn"
    # the name rows hold only the names' ink: the title's glyphs must not reach into them
    x0 = layout.col_x(1)
    name_rows = (arr[band_top:layout.header_h, :, :3] < 100).all(axis=2)
    outside_names = name_rows.copy()
    for first in (1, 5):
        c0, c1 = layout.col_x(first), layout.col_x(first + 3) + layout.tile
        centre = (c0 + c1) // 2
        outside_names[:, centre - 40:centre + 40] = False  # the centred name itself
    assert not outside_names[:, x0:layout.width].any(), "title text overlaps the group headers"
