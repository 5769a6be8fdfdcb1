"""``res.confusions`` and ``res.confused_queries`` against brute force on random cases."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oml_viz as ov


@st.composite
def results(draw):
    n = draw(st.integers(2, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    emb = rng.integers(-2, 3, size=(n, 2)).astype(np.float32)  # exact ties
    raw = rng.integers(0, draw(st.integers(1, 6)), size=n)
    kind = draw(st.sampled_from(["int", "str", "tuple", "mixed"]))
    if kind == "int":
        labels = list(raw)
    elif kind == "str":
        labels = [f"l{v}" for v in raw]
    elif kind == "tuple":
        labels = [(int(v), "x") for v in raw]
    else:
        labels = [int(v) if v % 2 else f"s{v}" for v in raw]
    is_query = rng.random(n) < 0.7
    is_gallery = rng.random(n) < 0.8
    is_query[0] = is_gallery[-1] = True
    seq = None
    if draw(st.booleans()):
        seq = [None if rng.random() < 0.3 else int(rng.integers(0, 4)) for _ in range(n)]
    res = ov.retrieve(emb, labels, is_query, is_gallery, top_n=draw(st.integers(3, 7)), sequence_ids=seq,
                      progress=False)
    cats = list(rng.choice(["cat", "dog"], size=n))
    return res, labels, cats, draw(st.integers(1, 3))


def _brute(res, labels, k, cats=None):
    """(group, a, b) -> [count, queries set]; group -> label -> number of queries with GT."""
    counts, queries, per_label = Counter(), defaultdict(set), Counter()
    for r, q in enumerate(res.query_ids):
        if res.n_gt[r] == 0:
            continue
        g = None if cats is None else cats[q]
        per_label[(g, labels[q])] += 1
        for c in range(min(k, res.retrieved_ids.shape[1])):
            item = res.retrieved_ids[r, c]
            if item < 0 or labels[item] == labels[q]:
                continue
            counts[(g, labels[q], labels[item])] += 1
            queries[(g, labels[q], labels[item])].add(int(q))
    return counts, queries, per_label


def _key(v):
    return (type(v).__name__, v)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results(), st.booleans())
def test_confusions_match_brute_force(case, with_categories):
    res, labels, cats, k = case
    table = res.confusions(k=k, categories=cats if with_categories else None)
    counts, queries, per_label = _brute(res, labels, k, cats if with_categories else None)
    expected = sorted(
        ((g, a, b, c, len(queries[(g, a, b)]), len(queries[(g, a, b)]) / per_label[(g, a)])
         for (g, a, b), c in counts.items()),
        key=lambda t: (-t[3], t[0] or "", _key(t[1]), _key(t[2])))
    cols = ["query_label", "retrieved_label", "count", "queries", "share"]
    assert list(table.columns) == (["category"] if with_categories else []) + cols
    got = [((row.category if with_categories else None), row.query_label, row.retrieved_label, row.count,
            row.queries, row.share) for row in table.itertuples()]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g[:5] == e[:5]
        for got_label, want in ((g[1], e[1]), (g[2], e[2])):  # original values and types
            ints = (int, np.integer)
            assert type(got_label) is type(want) or (isinstance(got_label, ints) and isinstance(want, ints))
        assert g[5] == pytest.approx(e[5])
    assert table["count"].dtype == np.int64 and table["queries"].dtype == np.int64


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results())
def test_confused_queries_match_brute_force(case):
    res, labels, _, k = case
    table = res.confusions(k=k)
    for a, b in table[["query_label", "retrieved_label"]].itertuples(index=False):
        entries = []
        for r, q in enumerate(res.query_ids):
            if res.n_gt[r] == 0 or labels[q] != a:
                continue
            ranks = [c for c in range(min(k, res.retrieved_ids.shape[1]))
                     if res.retrieved_ids[r, c] >= 0 and labels[res.retrieved_ids[r, c]] == b]
            if ranks:
                entries.append((-len(ranks), ranks[0], int(q)))
        assert res.confused_queries(a, b, k=k).tolist() == [q for *_, q in sorted(entries)]
        n_queries = table[(table.query_label.map(lambda v: v == a)) &
                          (table.retrieved_label.map(lambda v: v == b))]["queries"].iloc[0]
        assert len(entries) == n_queries


def test_labels_keep_their_type_and_result_is_unchanged():
    emb = np.array([[0.0], [0.1], [0.15], [1.0], [1.1], [1.2]], dtype=np.float32)
    labels = np.array([10, 10, 20, 20, 30, 30])
    res = ov.retrieve(emb, labels, top_n=3, progress=False)
    before = {name: getattr(res, name).copy() for name in ("retrieved_ids", "is_relevant", "labels")}
    conf = res.confusions(k=3)
    assert conf["query_label"].dtype == labels.dtype
    assert set(conf["query_label"]) <= {10, 20, 30}
    assert res.categories is None and not any(str(key).startswith("conf") for key in res._cache)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(res, name), value)
    empty = ov.retrieve(np.array([[0.0], [0.1], [5.0], [5.1]]), [0, 0, 1, 1], top_n=1, progress=False).confusions(k=1)
    assert empty.empty and list(empty.columns) == ["query_label", "retrieved_label", "count", "queries", "share"]


def test_bad_inputs():
    res = ov.retrieve(np.arange(6.0)[:, None], ["a", "a", "b", "b", "c", "c"], top_n=3, progress=False)
    with pytest.raises(ValueError, match="k=4 above top_n=3"):
        res.confusions(k=4)
    with pytest.raises(ValueError, match="k must be a positive int"):
        res.confusions(k=0)
    with pytest.raises(ValueError, match="'z' is not a label"):
        res.confused_queries("z", "a", k=2)
    with pytest.raises(ValueError, match="same label"):
        res.confused_queries("a", "a", k=2)
    with pytest.raises(ValueError, match="categories has 2 values"):
        res.confusions(k=2, categories=["x", "y"])
    assert isinstance(res.confusions(k=2), pd.DataFrame)


def test_heat_map_cells_are_the_top_pairs():
    from oml_viz.render.confusions import confusion_matrix_of

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 80)
    res = ov.retrieve(rng.normal(size=(80, 3)), labels, top_n=5, progress=False)
    conf = res.confusions(k=5)
    m = confusion_matrix_of(conf, top=6)
    assert np.isfinite(m.to_numpy()).sum() == 6
    for a, b, c in conf.head(6)[["query_label", "retrieved_label", "count"]].itertuples(index=False):
        assert m.loc[a, b] == c
    fig = ov.plot_confusions(res, k=5, top=6)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(v) for v in m.index]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in m.columns]
    assert ov.figure_to_array(fig).shape[2] == 3
    with pytest.raises(ValueError, match="top must be a positive int"):
        ov.plot_confusions(res, top=0)
    with pytest.raises(ValueError, match="value must be one of"):
        ov.plot_confusions(res, value="ratio")
    clean = ov.retrieve(np.array([[0.0], [0.1], [5.0], [5.1]]), [0, 0, 1, 1], top_n=1, progress=False)
    assert "no confusions" in ov.plot_confusions(clean, k=1).axes[0].texts[0].get_text()
