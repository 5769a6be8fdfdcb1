"""``oml_viz.EmbeddingMetrics``: OML 4.0's interface, numbers from a brute-force reference.

The reference (tests/engine_reference.py) implements OML's metric definitions with plain loops.
benchmarks/bench_oml_metrics.py compares against the real OML 4.0 package (not a dependency).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from engine_reference import fnmr, mean_metric, pcf, query_metric, reference

import oml_viz
from oml_viz.oml import EmbeddingMetrics

ARGS = dict(cmc_top_k=(1, 3), precision_top_k=(3,), map_top_k=(2, 3), fmr_vals=(0.2,),
            pcf_variance=(0.5, 0.9), verbose=False)


def make_df(seed: int, n: int = 40, with_sequence: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    emb = (rng.normal(size=(8, 6))[labels] + rng.normal(scale=0.9, size=(n, 6))).astype(np.float32)
    df = pd.DataFrame({
        "label": labels,
        "is_query": rng.random(n) < 0.8,
        "is_gallery": rng.random(n) < 0.8,
        "category": np.array(["bags", "shoes"])[labels % 2],
    })
    df.loc[0, ["is_query", "is_gallery"]] = [True, True]
    if with_sequence:
        df["sequence"] = rng.integers(0, 25, n)
    return df, emb


def fill(calc: EmbeddingMetrics, emb: np.ndarray, seed: int = 0, torch_input: bool = True) -> None:
    """Shuffled order, uneven batch sizes, indices as tensors, lists or arrays."""
    order = np.random.default_rng(seed).permutation(len(emb))
    calc.setup()
    for i, idx in enumerate(np.array_split(order, [3, 4, 17, 30])):
        batch = torch.from_numpy(emb[idx]) if torch_input else emb[idx]
        indices = [torch.from_numpy(idx), idx.tolist(), idx][i % 3]
        calc.update(batch, indices)


def brute_force(df: pd.DataFrame, emb: np.ndarray) -> dict:
    seq = df["sequence"].tolist() if "sequence" in df else None
    ref = reference(emb, df["label"].tolist(), df["is_query"].tolist(), df["is_gallery"].tolist(),
                    top_n=3, distance="euclidean", seq=seq)
    query_cats = df["category"].to_numpy()[ref["query_ids"]]
    out: dict = {}
    for name in ["OVERALL", "bags", "shoes"]:
        rows = np.ones(len(query_cats), bool) if name == "OVERALL" else query_cats == name
        per: dict = {}
        for kind, ks in (("cmc", ARGS["cmc_top_k"]), ("precision", ARGS["precision_top_k"]),
                         ("map", ARGS["map_top_k"])):
            per[kind] = {k: mean_metric([query_metric(kind, k, list(ref["is_relevant"][r]), ref["n_gt"][r])
                                         for r in np.flatnonzero(rows)]) for k in ks}
        items = emb if name == "OVERALL" else emb[df["category"].to_numpy() == name]
        per["pcf"] = {v: pcf(items, v) for v in ARGS["pcf_variance"]}
        if name == "OVERALL":
            per["fnmr@fmr"] = {v: fnmr(ref["pairs"], v)[0] for v in ARGS["fmr_vals"]}
        out[name] = per
    return out


def as_floats(metrics: dict) -> dict:
    return {k: as_floats(v) if isinstance(v, dict) else float(v) for k, v in metrics.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force_and_oml_shape(seed):
    df, emb = make_df(seed)
    calc = EmbeddingMetrics(df, **ARGS)
    fill(calc, emb, seed)
    with pytest.warns(UserWarning, match="no ground truth") if _has_queries_without_gt(df) else _nothing():
        metrics = calc.compute_metrics()
    expected = brute_force(df, emb)
    assert list(metrics) == ["OVERALL", "bags", "shoes"]
    assert list(metrics["OVERALL"]) == ["cmc", "precision", "map", "pcf", "fnmr@fmr"]
    assert list(metrics["bags"]) == ["cmc", "precision", "map", "pcf"]  # FNMR only overall, as OML
    assert all(isinstance(k, int) for k in metrics["OVERALL"]["cmc"])
    value = metrics["OVERALL"]["cmc"][1]
    assert isinstance(value, torch.Tensor) and value.ndim == 0  # OML's reduced values
    got = as_floats(metrics)
    assert got.keys() == expected.keys()
    for cat in expected:
        for kind in expected[cat]:
            for k, want in expected[cat][kind].items():
                assert got[cat][kind][k] == pytest.approx(want, abs=1e-5), (cat, kind, k)


def _has_queries_without_gt(df: pd.DataFrame) -> bool:
    res = oml_viz.retrieve(np.zeros((len(df), 1), np.float32), df["label"], df["is_query"],
                           df["is_gallery"], top_n=1, sequence_ids=df.get("sequence"))
    return bool((res.n_gt == 0).any())


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_batches_in_any_order_and_size_give_the_same_numbers():
    df, emb = make_df(3, with_sequence=False)
    one = EmbeddingMetrics(df, **ARGS)
    one.setup()
    one.update(emb, np.arange(len(emb)))
    many = EmbeddingMetrics(df, **ARGS)
    fill(many, emb, seed=5, torch_input=False)
    assert as_floats(one.compute_metrics()) == as_floats(many.compute_metrics())
    np.testing.assert_array_equal(one.result.retrieved_ids, many.result.retrieved_ids)


def test_result_is_the_engine_result_of_the_same_data():
    df, emb = make_df(4)
    calc = EmbeddingMetrics(df, **ARGS)
    fill(calc, emb)
    metrics = calc.compute_metrics()
    res = calc.result
    assert isinstance(res, oml_viz.RetrievalResult)
    direct = oml_viz.retrieve(emb, df["label"], df["is_query"], df["is_gallery"], top_n=5,
                              sequence_ids=df["sequence"])  # 5: what visualize() shows
    np.testing.assert_array_equal(res.retrieved_ids, direct.retrieved_ids)
    assert float(metrics["OVERALL"]["map"][3]) == pytest.approx(np.nanmean(direct.per_query("map/3")))


def test_return_only_overall_and_empty_groups():
    df, emb = make_df(5)
    calc = EmbeddingMetrics(df, cmc_top_k=(2,), precision_top_k=(), map_top_k=(), pcf_variance=(),
                            return_only_overall_category=True, verbose=False)
    fill(calc, emb)
    metrics = calc.compute_metrics()
    assert list(metrics) == ["OVERALL"] and list(metrics["OVERALL"]) == ["cmc"]
    assert list(calc.metrics) == ["OVERALL", "bags", "shoes"]  # kept for visualize, as OML


def test_oml_dataset_object_gives_the_same_numbers():
    df, emb = make_df(6)

    class OMLLikeDataset:  # OML's IQueryGalleryLabeledDataset surface
        extra_data = {"category": df["category"].to_numpy(), "sequence": df["sequence"].to_numpy()}

        def __len__(self):
            return len(df)

        def get_labels(self):
            return df["label"].to_numpy()

        def get_query_ids(self):
            return torch.from_numpy(np.flatnonzero(df["is_query"].to_numpy()))

        def get_gallery_ids(self):
            return torch.from_numpy(np.flatnonzero(df["is_gallery"].to_numpy()))

    a, b = EmbeddingMetrics(df, **ARGS), EmbeddingMetrics(OMLLikeDataset(), **ARGS)
    fill(a, emb)
    fill(b, emb)
    assert as_floats(a.compute_metrics()) == as_floats(b.compute_metrics())
    assert not b.ready_to_visualize()


def test_worst_queries_are_positions_among_queries_worst_first():
    df, emb = make_df(7, n=60)
    calc = EmbeddingMetrics(df, **ARGS)
    fill(calc, emb)
    calc.compute_metrics()
    per_query = calc.result.per_query("map/3")
    ok = np.flatnonzero(~np.isnan(per_query))
    expected = ok[np.lexsort((ok, per_query[ok]))][:6].tolist()
    assert calc.get_worst_queries_ids("OVERALL/map/3", n_queries=6) == expected
    shoes = calc.get_worst_queries_ids("shoes/cmc/1", n_queries=100)
    cats = df["category"].to_numpy()[calc.result.query_ids]
    per_cmc = calc.result.per_query("cmc/1")
    want = [p for p in np.lexsort((np.arange(len(cats)), per_cmc)) if cats[p] == "shoes"
            and not np.isnan(per_cmc[p])]
    assert shoes == want
    with pytest.raises(ValueError, match="no per-query values"):
        calc.get_worst_queries_ids("OVERALL/pcf/0.5", 3)
    with pytest.raises(ValueError, match="OVERALL/cmc/1"):
        calc.get_worst_queries_ids("OVERALL/cmc/7", 3)


def test_duplicate_missing_and_bad_indices_are_clear_errors():
    df, emb = make_df(8)
    calc = EmbeddingMetrics(df, **ARGS)
    with pytest.raises(RuntimeError, match="setup"):
        calc.update(emb[:2], [0, 1])
    calc.setup()
    calc.update(emb[:10], np.arange(10))
    calc.update(emb[5:12], np.arange(5, 12))
    with pytest.raises(ValueError, match=r"5 indices came more than once \(first: \[5, 6, 7, 8, 9\]\)"):
        calc.compute_metrics()
    with pytest.raises(ValueError, match=r"28 of 40 indices never came \(first: \[12, 13, 14, 15, 16\]\)"):
        calc.compute_metrics()
    with pytest.raises(ValueError, match=r"\[0, 39\].*\[40, -1\]"):
        calc.update(emb[:2], [40, -1])
    with pytest.raises(ValueError, match="indices has 3 entries"):
        calc.update(emb[:2], [0, 1, 2])
    with pytest.raises(ValueError, match="dimension 3"):
        calc.update(emb[:2, :3], [0, 1])
    calc.setup()  # a new epoch forgets the old batches
    calc.update(emb, np.arange(len(emb)))
    calc.compute_metrics()


def test_bad_datasets_and_postprocessor_are_named():
    df, _ = make_df(9)
    with pytest.raises(ValueError, match="validation"):
        EmbeddingMetrics(df.assign(split=["train", "validation"] * 20))
    with pytest.raises(ValueError, match="is_gallery"):
        EmbeddingMetrics(df.drop(columns="is_gallery"))
    with pytest.raises(ValueError, match="postprocessor"):
        EmbeddingMetrics(df, postprocessor=object())
    with pytest.raises(TypeError, match="OML dataframe"):
        EmbeddingMetrics([1, 2, 3])
    with pytest.raises(RuntimeError, match="compute_metrics"):
        EmbeddingMetrics(df).result


def test_visualize_returns_oml_titles_and_figures(tmp_path):
    from PIL import Image

    df, emb = make_df(10, n=16, with_sequence=False)
    for i in range(len(df)):
        Image.fromarray(np.full((8, 8, 3), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
    df["path"] = [f"{i}.png" for i in range(len(df))]
    calc = EmbeddingMetrics(df, cmc_top_k=(1,), precision_top_k=(), map_top_k=(2,),
                            fmr_vals=(0.5,), metrics_to_exclude_from_visualization=["map"],
                            verbose=False, dataset_root=str(tmp_path))
    fill(calc, emb)
    calc.compute_metrics()
    figures, titles = calc.visualize()
    assert titles == ["top 5 worst by OVERALL_cmc_1"]  # pcf, fnmr@fmr and the excluded map skipped
    figures[0].canvas.draw()
    assert np.asarray(figures[0].canvas.buffer_rgba())[..., :3].std() > 0  # something was drawn
    calc.visualize_only_overall_category = False
    _, titles = calc.visualize()
    assert titles == ["top 5 worst by OVERALL_cmc_1", "top 5 worst by bags_cmc_1",
                      "top 5 worst by shoes_cmc_1"]
    fig = calc.get_plot_for_worst_queries("OVERALL/cmc/1", n_queries=2, n_instances=3)
    assert fig is not None
    import matplotlib.pyplot as plt

    plt.close("all")


def test_top_level_name_is_this_class():
    assert oml_viz.EmbeddingMetrics is EmbeddingMetrics
