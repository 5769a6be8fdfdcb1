"""Hand-checked engine behaviour and every bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import oml_viz as ov
from oml_viz.engine import metrics as M
from oml_viz.engine.topk import smallest_k


def test_hand_checked_map_and_precision():
    hits = np.array([[0, 1, 0, 0, 1]], dtype=bool)
    n_gt = np.array([5])
    # map/5 = (1/2) * (1/2 + 2/5) = 0.45; precision/5 = 2 / min(5, 5) = 0.4
    assert M.average_precision(hits, n_gt, 5)[0] == pytest.approx(0.45)
    assert M.precision(hits, n_gt, 5)[0] == pytest.approx(0.40)
    assert M.cmc(hits, n_gt, 1)[0] == 0 and M.cmc(hits, n_gt, 2)[0] == 1
    # precision divides by min(k, n_gt): 1 relevant item found of 1 -> 1.0, not 1/5
    assert M.precision(np.array([[1, 0, 0, 0, 0]], bool), np.array([1]), 5)[0] == 1.0
    assert M.average_precision(np.zeros((1, 5), bool), np.array([3]), 5)[0] == 0.0


def test_simple_retrieval_by_hand():
    emb = np.array([[0.0, 0], [1, 0], [0, 2], [5, 5]], dtype=np.float32)
    res = ov.retrieve(emb, ["a", "a", "b", "b"], top_n=3)
    assert res.query_ids.tolist() == [0, 1, 2, 3]
    assert res.retrieved_ids.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [2, 1, 0]]
    np.testing.assert_allclose(res.distances[0], [1, 2, np.sqrt(50)], rtol=1e-6)
    assert res.is_relevant.tolist() == [[True, False, False], [True, False, False],
                                        [False, False, True], [True, False, False]]
    assert res.n_gt.tolist() == [1, 1, 1, 1]
    table = res.metrics(cmc_top_k=(1,), precision_top_k=(3,), map_top_k=(3,))
    assert table.loc["OVERALL", "cmc/1"] == 0.75
    assert table.loc["OVERALL", "map/3"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
    assert res.gt_ids(3).tolist() == [2]
    ids, dist = res.gt_ids(0, return_distances=True)
    assert ids.tolist() == [1] and dist.tolist() == [1.0]


def test_ties_broken_by_smaller_item_id_and_padding():
    emb = np.array([[0.0], [1.0], [-1.0], [1.0], [-1.0]], dtype=np.float32)
    res = ov.retrieve(emb, [0, 1, 1, 1, 1], is_query=[1, 0, 0, 0, 0], top_n=10)
    assert res.retrieved_ids.tolist() == [[1, 2, 3, 4, -1]]  # all at distance 1: by id; itself never
    res = ov.retrieve(emb, [0, 1, 1, 1, 1], is_query=[1, 0, 0, 0, 0], top_n=10, sequence_ids=[0, 0, 5, 5, 6])
    assert res.retrieved_ids.tolist() == [[2, 3, 4, -1, -1]]
    assert res.distances[0, -1] == np.inf and not res.is_relevant[0, -1]


def test_cosine_ties_between_duplicates():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 16)).astype(np.float32)
    emb = np.concatenate([rng.normal(size=(1, 16)), base, base * 3, base, rng.normal(size=(300, 16))]).astype(np.float32)
    res = ov.retrieve(emb, np.arange(len(emb)) % 3, is_query=np.arange(len(emb)) == 0, distance="cosine", top_n=5)
    first = res.retrieved_ids[0]
    dup = [i for i in first if i in (1, 2, 3)]
    assert dup == sorted(dup)


def test_sequences_are_excluded_from_results_and_ground_truth():
    emb = np.array([[0.0], [0.1], [0.2], [3.0]], dtype=np.float32)
    res = ov.retrieve(emb, [7, 7, 7, 8], top_n=3, sequence_ids=["s", "s", None, None])
    assert 1 not in res.retrieved_ids[0] and 0 not in res.retrieved_ids[1]
    assert res.n_gt.tolist() == [1, 1, 2, 0]


def test_no_ground_truth_queries_warn_once_and_are_nan():
    emb = np.arange(5, dtype=np.float32)[:, None]
    res = ov.retrieve(emb, [1, 1, 2, 3, 3], top_n=2)
    with pytest.warns(UserWarning, match="1 of 5 queries have no ground truth") as record:
        table = res.metrics(cmc_top_k=(1,), precision_top_k=(2,), map_top_k=(2,))
    assert len(record) == 1
    assert np.isnan(res.per_query("precision/2")[2])
    assert table.loc["OVERALL", "precision/2"] == pytest.approx(1.0)
    assert 2 not in res.worst_queries("map/2", n=5)


def test_categories_and_worst_queries():
    emb = np.array([[0.0], [0.1], [1.0], [1.05], [1.1], [3.0], [3.01]], dtype=np.float32)
    labels = [0, 0, 1, 2, 1, 3, 3]
    cats = ["x", "x", "y", "y", "y", "z", "z"]
    res = ov.retrieve(emb, labels, top_n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(), categories=cats)
    assert list(table.index) == ["OVERALL", "x", "y", "z"]
    per_q = res.per_query("cmc/1")
    assert table.loc["y", "cmc/1"] == pytest.approx(np.nanmean(per_q[[2, 4]]))
    worst = res.worst_queries("cmc/1", n=10)
    values = per_q[worst]
    assert np.all(np.diff(values) >= 0)  # worst first
    assert worst.tolist() == sorted(worst.tolist(), key=lambda i: (per_q[i], i))
    assert set(res.worst_queries("cmc/1", n=10, category="y", categories=cats)) <= {2, 4}
    with pytest.raises(ValueError, match="category 'w' has no queries"):
        res.worst_queries("cmc/1", category="w", categories=cats)
    assert res.categories is None  # metrics(categories=...) did not change the result


def test_inputs_are_never_modified_and_torch_works():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    before = emb.copy()
    tensor = torch.from_numpy(emb.copy())
    res_np = ov.retrieve(emb, np.arange(50) % 5, distance="cosine")
    res_t = ov.retrieve(tensor, torch.arange(50) % 5, distance="cosine")
    np.testing.assert_array_equal(emb, before)
    np.testing.assert_array_equal(tensor.numpy(), before)
    np.testing.assert_array_equal(res_np.retrieved_ids, res_t.retrieved_ids)
    float64 = ov.retrieve(emb.astype(np.float64), np.arange(50) % 5)
    assert float64.distances.dtype == np.float32 and float64.retrieved_ids.dtype == np.int64


def test_labels_may_be_any_hashable():
    emb = np.array([[0.0], [0.1], [5.0], [5.1]], dtype=np.float32)
    for labels in (["a", "a", "b", "b"], [(1, 2), (1, 2), (3,), (3,)], ["x", "x", 3, 3]):
        res = ov.retrieve(emb, labels, top_n=1)
        assert res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=())["cmc/1"]["OVERALL"] == 1.0


def test_metric_columns_and_flat_keys():
    rng = np.random.default_rng(0)
    res = ov.retrieve(rng.normal(size=(40, 4)).astype(np.float32), np.arange(40) % 4)
    table = res.metrics(fmr_vals=(0.1,), pcf_variance=(0.5,))
    assert list(table.columns) == ["cmc/1", "cmc/5", "precision/5", "map/5", "fnmr@fmr/0.1", "pcf/0.5"]
    keys = {f"{i}/{c}" for i in table.index for c in table.columns}
    assert "OVERALL/cmc/1" in keys


def test_smallest_k_orders_by_value_then_column():
    scores = torch.tensor([[2.0] * 256 + [1.0] * 128 + [0.0] * 2 + [5.0] * 126])
    values, cols = smallest_k(scores, 4)
    assert cols.tolist() == [[384, 385, 256, 257]]
    assert values.tolist() == [[0.0, 0.0, 1.0, 1.0]]


# ------------------------------------------------------------------ bad input
EMB = np.zeros((4, 2), dtype=np.float32) + np.arange(4)[:, None]
LAB = [0, 0, 1, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embeddings": np.zeros(4)}, r"embeddings must be 2-D"),
        ({"embeddings": np.zeros((4, 2, 1))}, r"embeddings must be 2-D"),
        ({"embeddings": EMB[:3]}, r"labels has 4 values but embeddings has 3 rows"),
        ({"embeddings": np.where(np.arange(8).reshape(4, 2) == 5, np.nan, EMB)}, r"NaN or inf in rows \[2\]"),
        ({"embeddings": np.where(np.arange(8).reshape(4, 2) == 7, np.inf, EMB)}, r"NaN or inf in rows \[3\]"),
        ({"labels": [0, 0, 1]}, r"labels has 3 values"),
        ({"labels": [0, None, 1, 1]}, r"labels has missing values .* rows \[1\]"),
        ({"is_query": [False] * 4}, r"is_query selects no item"),
        ({"is_gallery": [0, 0, 0, 0]}, r"is_gallery selects no item"),
        ({"is_query": [True, False]}, r"is_query has 2 values"),
        ({"is_gallery": [0, 2, 1, 1]}, r"is_gallery must be booleans .* rows \[1\]"),
        ({"sequence_ids": [1, 2]}, r"sequence_ids has 2 values"),
        ({"top_n": 0}, r"top_n must be a positive int"),
        ({"distance": "manhattan"}, r"distance must be one of"),
        ({"batch_size": -1}, r"batch_size must be a positive int"),
        ({"device": "nonsense"}, r"device 'nonsense'"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"embeddings": EMB, "labels": LAB, **kwargs}
    emb, labels = args.pop("embeddings"), args.pop("labels")
    with pytest.raises(ValueError, match=match):
        ov.retrieve(emb, labels, **args)


def test_cosine_zero_vector_is_an_error():
    with pytest.raises(ValueError, match=r"zero vectors \(rows \[0\]\)"):
        ov.retrieve(np.array([[0.0, 0], [1, 0]]), [0, 0], distance="cosine")


def test_metric_argument_errors():
    res = ov.retrieve(EMB, LAB, top_n=3)
    with pytest.raises(ValueError, match=r"k=5 above top_n=3: call retrieve\(\.\.\., top_n=5\)"):
        res.metrics()
    with pytest.raises(ValueError, match="top_n=10"):
        res.per_query("map/10")
    for name in ("recall/1", "map", "map/0", "cmc/x"):
        with pytest.raises(ValueError, match="unknown metric"):
            res.per_query(name)
    with pytest.raises(ValueError, match="fmr_vals values must lie in"):
        res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(), fmr_vals=(1.5,))
    with pytest.raises(ValueError, match="pcf_variance values must lie in"):
        res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(), pcf_variance=(0,))
    with pytest.raises(ValueError, match="every cmc_top_k value must be a positive int, got 0"):
        res.metrics(cmc_top_k=(0,))
    with pytest.raises(ValueError, match="categories has 2 values"):
        res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(), categories=["a", "b"])
    with pytest.raises(ValueError, match="needs categories"):
        res.worst_queries("cmc/1", category="a")
    with pytest.raises(ValueError, match="query_id 9 is not a query"):
        res.gt_ids(9)


def test_dataframe_columns_work_as_inputs():
    df = pd.DataFrame({"label": LAB, "is_query": [True, True, False, False], "is_gallery": [False, False, True, True]})
    res = ov.retrieve(EMB, df["label"], df["is_query"], df["is_gallery"], top_n=2)
    assert res.query_ids.tolist() == [0, 1] and res.retrieved_ids.tolist() == [[2, 3], [2, 3]]
