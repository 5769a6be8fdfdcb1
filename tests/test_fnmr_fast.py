"""The single-pass exact FNMR@FMR (``fnmr_single_pass``) against a numpy.quantile reference."""
import numpy as np
import pytest
import torch

import oml_viz as ov
from oml_viz.engine import fnmr
from oml_viz.engine import fnmr_pairs
from oml_viz.engine import fnmr_single_pass as single
from oml_viz.engine.search import exact_distances, unit_rows

CPU = torch.device("cpu")
PS = [0.001, 0.02, 0.1, 0.5]


def _reference(v, labels, groups, n_groups, ps, distance, seq):
    """numpy.quantile reference with every item a query and in the gallery."""
    ids = np.arange(len(v))
    return _reference_qg(v, ids, ids, labels, seq, groups, n_groups, ps, distance)


def _data(seed, distance, offset=0.0, rounding=False, duplicates=False, n=900, dim=12):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    if duplicates:  # 200 rows copied from 5 rows, labels and groups drawn independently
        v[:200] = v[200 + rng.integers(0, 5, 200)]
    v = torch.as_tensor(v)
    if rounding:
        v = torch.round(v * 2)  # exact ties everywhere
    v = v * (1000 if offset else 1) + offset  # far from the origin: the product cancels badly
    if distance == "cosine":
        v = unit_rows(v)
    labels, seq, groups = rng.integers(0, 15, n), rng.integers(0, 400, n), rng.integers(0, 3, n)
    return v, labels, seq, groups


CASES = [
    ("euclidean", 0.0, False, False),
    ("cosine", 0.0, False, False),
    ("euclidean", 0.0, True, False),
    ("cosine", 0.0, True, False),
    ("euclidean", 5e4, False, False),
    ("euclidean", 0.0, False, True),
    ("cosine", 0.0, False, True),
]


@pytest.mark.parametrize("relevant", ["listed", "by product"])
@pytest.mark.parametrize("distance, offset, rounding, duplicates", CASES)
def test_single_pass_equals_the_quantile_reference(monkeypatch, distance, offset, rounding, duplicates, relevant):
    """(``relevant``: the relevant pairs compared with the thresholds from their exact distances, or from the
    product, with exact distances only near a threshold, as for large labels.)"""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)  # a real sample (about a quarter of the queries)
    if relevant == "by product":
        monkeypatch.setattr(single, "_LARGE_LABEL", 1)
    v, labels, seq, groups = _data(3, distance, offset, rounding, duplicates)
    ids = np.arange(len(v))
    out = single.fnmr_single_pass(fnmr.FnmrTask(v, ids, ids, labels, seq, groups, 3, PS, distance, CPU))
    assert out is not None
    np.testing.assert_array_equal(out, _reference(v, labels, groups, 3, PS, distance, seq))


def test_single_pass_with_every_query_sampled_and_an_empty_group():
    v, labels, seq, groups = _data(4, "euclidean", n=300)
    groups = np.where(groups == 1, 0, groups)  # group 1 has no query
    ids = np.arange(len(v))
    out = single.fnmr_single_pass(fnmr.FnmrTask(v, ids, ids, labels, seq, groups, 3, PS, "euclidean", CPU))
    assert out is not None
    np.testing.assert_array_equal(out, _reference(v, labels, groups, 3, PS, "euclidean", seq))


class _Passes(single.tqdm):
    """tqdm that records each bar's description and final count (one bar per pass over the pairs)."""

    seen: list = []

    def __init__(self, *args, **kwargs):
        self.label = kwargs.get("desc")
        super().__init__(*args, **kwargs)

    def close(self):
        if not getattr(self, "recorded", False):
            self.recorded = True
            _Passes.seen.append((self.label, self.n, self.total))
        super().close()


def test_a_missed_bracket_is_recovered_by_the_histogram_pass(monkeypatch):
    """Brackets from the sample that miss (empty ones here: every rank falls outside) cost one histogram
    pass, not the older paths."""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)
    monkeypatch.setattr(single, "_MARGIN_Z", -50.0)
    monkeypatch.setattr(single, "_PROGRESS_MIN_PAIRS", 0)
    monkeypatch.setattr(single, "tqdm", _Passes)
    _Passes.seen = []
    v, labels, seq, groups = _data(5, "euclidean")
    ids = np.arange(len(v))
    out = single.fnmr_single_pass(fnmr.FnmrTask(v, ids, ids, labels, seq, groups, 3, PS, "euclidean", CPU))
    np.testing.assert_array_equal(out, _reference(v, labels, groups, 3, PS, "euclidean", seq))
    assert [desc for desc, _, _ in _Passes.seen] == ["fnmr@fmr", "fnmr@fmr (histogram)", "fnmr@fmr"]


def test_fallback_when_the_single_pass_cannot_decide(monkeypatch):
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)
    monkeypatch.setattr(single, "_MAX_COLLECT", 0)  # every bracket alone over the budget
    v, labels, seq, groups = _data(5, "euclidean")
    ids = np.arange(len(v))
    args = (v, ids, ids, labels, seq, groups, 3, PS, "euclidean", CPU)
    assert single.fnmr_single_pass(fnmr.FnmrTask(*args)) is None
    np.testing.assert_array_equal(fnmr.fnmr_at_fmr(*args), _reference(v, labels, groups, 3, PS, "euclidean", seq))


def test_metrics_through_retrieve_agree_with_the_older_paths(monkeypatch):
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(600, 8)).astype(np.float32)
    labels, cats = rng.integers(0, 10, 600), rng.choice(["a", "b", "c"], 600)
    res = ov.retrieve(emb, labels, categories=cats)
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 100)
    one_pass = res.metrics(fmr_vals=(0.001, 0.01, 0.1))
    monkeypatch.setattr(single, "_MAX_COLLECT", 0)  # the window path
    windows = res.metrics(fmr_vals=(0.001, 0.01, 0.1))
    np.testing.assert_array_equal(one_pass.to_numpy(), windows.to_numpy())


def _reference_qg(v, q_ids, g_ids, labels, seq, q_groups, n_groups, ps, distance):
    """numpy.quantile reference for any query and gallery subsets (groups per query row)."""
    q, g = v[q_ids], v[g_ids]
    d = exact_distances(q, g.unsqueeze(0).expand(len(q), -1, -1), distance).double().numpy()
    rel = labels[q_ids][:, None] == labels[g_ids][None, :]
    excluded = seq[q_ids][:, None] == seq[g_ids][None, :]
    out = []
    for grp in [None, *range(n_groups)]:
        m = np.ones(len(q_ids), bool) if grp is None else q_groups == grp
        neg, pos = d[m][~rel[m] & ~excluded[m]], d[m][rel[m] & ~excluded[m]]
        out.append([(pos >= np.quantile(neg, p)).mean() if len(pos) and len(neg) else np.nan for p in ps])
    return np.array(out)


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("layout", ["leave-one-out", "overlapping subsets", "disjoint", "shuffled ids"])
def test_single_pass_over_query_and_gallery_layouts(monkeypatch, layout, small):
    """The leave-one-out pass scores each unordered pair once (blocks split at group boundaries); other
    layouts score every pair; small blocks and tiles (sizes that divide nothing) force many blocks, tiles
    and segments cut by tile edges."""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 150)
    if small:
        monkeypatch.setattr(single, "_BLOCK_BYTES", 20_000)
        monkeypatch.setattr(single, "_TILE_ROWS", 47)
        monkeypatch.setattr(single, "_TILE_COLS", 83)
    v, labels, seq, _ = _data(7, "euclidean", n=700)
    rng = np.random.default_rng(8)
    q_ids, g_ids = {
        "leave-one-out": (np.arange(700), np.arange(700)),
        "overlapping subsets": (np.arange(0, 500), np.arange(200, 700)),
        "disjoint": (np.arange(0, 300), np.arange(300, 700)),
        "shuffled ids": (rng.permutation(700),) * 2,
    }[layout]
    q_groups = rng.integers(0, 4, len(q_ids))
    args = (v, q_ids, g_ids, labels, seq, q_groups, 4, PS, "euclidean", CPU)
    out = single.fnmr_single_pass(fnmr.FnmrTask(*args))
    assert out is not None
    np.testing.assert_array_equal(out, _reference_qg(v, q_ids, g_ids, labels, seq, q_groups, 4, PS, "euclidean"))


@pytest.mark.parametrize("layout", ["leave-one-out", "disjoint"])
def test_the_pass_shows_progress_in_pairs_from_the_retrieval_size(monkeypatch, capsys, layout):
    """A bar for the long pass that reaches its total (every pair scored, with tiles that divide nothing),
    only for big problems (the size from which retrieval shows one)."""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 150)
    monkeypatch.setattr(single, "_TILE_ROWS", 47)
    monkeypatch.setattr(single, "_TILE_COLS", 83)
    ends = []

    class Recording(single.tqdm):
        def close(self):
            if not ends or ends[-1] is not self:
                ends.append(self)
                self.final = (self.n, self.total, self.disable)
            super().close()

    monkeypatch.setattr(single, "tqdm", Recording)
    v, labels, seq, _ = _data(7, "euclidean", n=700)
    everything, first, rest = np.arange(700), np.arange(300), np.arange(300, 700)
    q_ids, g_ids = (everything, everything) if layout == "leave-one-out" else (first, rest)
    rng = np.random.default_rng(8)
    rng.permutation(700)  # the groups of the layouts test above, where the single pass decides
    q_groups = rng.integers(0, 4, len(q_ids))
    args = (v, q_ids, g_ids, labels, seq, q_groups, 4, PS, "euclidean", CPU)
    assert single.fnmr_single_pass(fnmr.FnmrTask(*args)) is not None
    assert ends[-1].final[2] and "fnmr@fmr" not in capsys.readouterr().err  # small: no bar
    monkeypatch.setattr(single, "_PROGRESS_MIN_PAIRS", 0)
    assert single.fnmr_single_pass(fnmr.FnmrTask(*args)) is not None
    n, total, disabled = ends[-1].final
    # leave-one-out: the upper triangle with each block's own square (over 700 x 701 / 2)
    assert not disabled and n == total and (total > 700 * 701 // 2 if layout == "leave-one-out" else total == 300 * 400)
    assert "fnmr@fmr" in capsys.readouterr().err


def _single_pass_equals_reference(v, labels, seq, groups, layout, distance):
    """The single pass on 900 items, leave-one-out or 400 queries against 500 others, equals the reference."""
    everything, first, rest = np.arange(900), np.arange(400), np.arange(400, 900)
    q_ids, g_ids = (everything, everything) if layout == "leave-one-out" else (first, rest)
    args = (v, q_ids, g_ids, labels, seq, groups[q_ids], 3, PS, distance, CPU)
    out = single.fnmr_single_pass(fnmr.FnmrTask(*args))
    assert out is not None
    np.testing.assert_array_equal(out, _reference_qg(v, q_ids, g_ids, labels, seq, groups[q_ids], 3, PS, distance))


@pytest.mark.parametrize("layout", ["leave-one-out", "disjoint"])
@pytest.mark.parametrize("distance, offset, rounding, duplicates, buffer", [
    *[(*case, 5_000) for case in CASES],  # many flushes of the bin buffer
    ("euclidean", 0.0, False, False, 1_000),  # tiles (47 x 83) larger than the buffer
])
def test_histogram_brackets_when_the_sample_would_keep_too_many(monkeypatch, distance, offset, rounding,
                                                                duplicates, buffer, layout):
    """Past the budget (forced by a margin that brackets everything) one histogram pass over every pair
    gives each order statistic's exact bin; the pass after it keeps only the pairs near them."""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)
    monkeypatch.setattr(single, "_MARGIN_Z", 1e9)
    monkeypatch.setattr(single, "_MAX_COLLECT", 200_000)  # below the whole range (810k pairs per bracket)
    monkeypatch.setattr(single, "_TILE_ROWS", 47)
    monkeypatch.setattr(single, "_TILE_COLS", 83)
    monkeypatch.setattr(single, "_HISTOGRAM_BUFFER", buffer)
    monkeypatch.setattr(single, "tqdm", _Passes)
    monkeypatch.setattr(single, "_PROGRESS_MIN_PAIRS", 0)
    _Passes.seen = []
    _single_pass_equals_reference(*_data(3, distance, offset, rounding, duplicates), layout, distance)
    passes = [desc for desc, n, total in _Passes.seen if n == total]
    # then one collecting pass, or several where wide windows (the far offset) keep more than the budget
    assert passes[0] == "fnmr@fmr (histogram)" and set(passes[1:]) == {"fnmr@fmr"}


def test_brackets_over_the_budget_share_passes(monkeypatch):
    """Brackets whose kept pairs together exceed the budget are resolved in several passes, none keeping
    more than the budget; the result is the same."""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)
    monkeypatch.setattr(single, "_MARGIN_Z", 1e9)
    monkeypatch.setattr(single, "_PROGRESS_MIN_PAIRS", 0)
    v, labels, seq, groups = _data(9, "euclidean", n=900, dim=4)
    ids = np.arange(900)
    args = (v, ids, ids, labels, seq, groups, 3, PS, "euclidean", CPU)
    reference = _reference(v, labels, groups, 3, PS, "euclidean", seq)
    kept: list[int] = []  # pairs kept by each collecting pass

    class Counting(_Passes):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            if self.label == "fnmr@fmr":
                kept.append(0)

    real_scan = single.block_scans.scan_regions

    def scan_regions(y, regions, use_numpy=None):
        out = real_scan(y, regions, use_numpy)
        kept[-1] += len(out[1])
        return out

    monkeypatch.setattr(single, "tqdm", Counting)
    monkeypatch.setattr(single.block_scans, "scan_regions", scan_regions)
    for budget in (200_000, 400):
        monkeypatch.setattr(single, "_MAX_COLLECT", budget)
        kept.clear()
        np.testing.assert_array_equal(single.fnmr_single_pass(fnmr.FnmrTask(*args)), reference)
        assert len(kept) == 1 if budget == 200_000 else (len(kept) > 1 and 0 < max(kept) <= budget)


def test_a_bracket_alone_over_the_budget_falls_back(monkeypatch):
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)
    monkeypatch.setattr(single, "_MARGIN_Z", 1e9)
    monkeypatch.setattr(single, "_MAX_COLLECT", 1)
    v, labels, seq, groups = _data(5, "euclidean")
    ids = np.arange(len(v))
    args = (v, ids, ids, labels, seq, groups, 3, PS, "euclidean", CPU)
    assert single.fnmr_single_pass(fnmr.FnmrTask(*args)) is None
    np.testing.assert_array_equal(fnmr.fnmr_at_fmr(*args), _reference(v, labels, groups, 3, PS, "euclidean", seq))


def _few_labels(seed, distance, n=900, dim=16, n_labels=3):
    """Clustered data with a few labels: a third of all pairs are relevant."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_labels, dim))
    labels = rng.integers(0, n_labels, n)
    v = torch.as_tensor((centers[labels] + rng.normal(size=(n, dim))).astype(np.float32))
    if distance == "cosine":
        v = unit_rows(v)
    return v, labels, rng.integers(0, 300, n), rng.integers(0, 3, n)


@pytest.mark.parametrize("marking", ["by label", "listed"])
@pytest.mark.parametrize("layout", ["leave-one-out", "disjoint"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_many_relevant_pairs_stay_on_the_exact_path(monkeypatch, marking, layout, distance):
    """A few labels: the relevant pairs are marked by label in each tile (or listed, forced here), and
    compared with the thresholds from their exact distances in pieces; equal to the reference."""
    monkeypatch.setattr(single, "_SAMPLE_QUERIES", 200)
    monkeypatch.setattr(single, "_TILE_ROWS", 47)
    monkeypatch.setattr(single, "_TILE_COLS", 83)
    monkeypatch.setattr(fnmr_pairs, "_RELEVANT_PIECE", 5_000)  # many pieces
    if marking == "listed":
        monkeypatch.setattr(single, "_DENSE_MARKING", 2.0)
    _single_pass_equals_reference(*_few_labels(11, distance), layout, distance)


def test_many_relevant_pairs_no_longer_take_the_product_distances(monkeypatch):
    """Past ``_MAX_RELEVANT`` the dispatcher used to take the older algorithm, whose quantiles come from the
    product's distances: on this set one relevant pair falls on the other side of a threshold there."""
    monkeypatch.setattr(fnmr, "_MAX_RELEVANT", 0)
    rng = np.random.default_rng(2)
    n, dim = 1500, 64
    centers, labels = rng.normal(size=(5, dim)), rng.integers(0, 5, n)
    v = torch.as_tensor((centers[labels] + rng.normal(size=(n, dim))).astype(np.float32))
    seq, groups, ids, ps = np.arange(n), rng.integers(0, 3, n), np.arange(n), [0.001, 0.01, 0.1, 0.5]
    args = (v, ids, ids, labels, seq, groups, 3, ps, "euclidean", CPU)
    reference = _reference(v, labels, groups, 3, ps, "euclidean", seq)
    assert not np.array_equal(fnmr.fnmr_two_pass.fnmr_two_pass(fnmr.FnmrTask(*args)), reference)
    np.testing.assert_array_equal(fnmr.fnmr_at_fmr(*args), reference)


def test_relevant_counts_and_pieces_agree_with_listing_the_pairs(monkeypatch):
    v, labels, seq, groups = _data(12, "euclidean", n=500)
    seq = seq % 40  # sequences shared by several items of a label
    q_ids, g_ids = np.arange(0, 350), np.arange(150, 500)
    local, cols = fnmr_pairs.relevant_pairs(np.arange(len(q_ids)), q_ids, g_ids, labels, seq)
    counts = fnmr_pairs.relevant_counts(q_ids, g_ids, labels, seq)
    np.testing.assert_array_equal(counts, np.bincount(local, minlength=len(q_ids)))
    dist = fnmr_pairs.exact_pair_distances(v, q_ids, v[g_ids], local, cols, "euclidean", CPU)
    q_groups = groups[q_ids]
    thresholds = [(0, float(np.median(dist))), (1, 4.0), (3, 5.5), (2, np.inf)]
    expected = [int(((dist if g == 0 else dist[q_groups[local] == g - 1]) >= t).sum()) for g, t in thresholds]
    for piece in (1 << 21, 97, 1):
        monkeypatch.setattr(fnmr_pairs, "_RELEVANT_PIECE", piece)
        got = fnmr_pairs.relevant_at_or_above(v, q_ids, v[g_ids], g_ids, labels, seq, q_groups, thresholds,
                                              "euclidean", CPU)
        assert got.tolist() == expected
