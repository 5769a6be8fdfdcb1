"""Bad input, by class: every public entry point, each argument: wrong type, wrong shape, empty,
NaN/inf, out of range, missing file. Each gives a clear error of the standard type
(TypeError / ValueError / FileNotFoundError) whose message names the argument."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import oml_viz as ov

N, D = 12, 4
RNG = np.random.default_rng(0)
EMB = RNG.normal(size=(N, D)).astype(np.float32)
LABELS = np.arange(N) % 3
IMG = np.zeros((32, 32, 3), np.uint8)
IMAGES = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(N)]
BAD_CUDA = "cuda:99" if torch.cuda.is_available() else "cuda"  # a device this machine does not have


def with_nan(a, value=np.nan):
    a = np.array(a, dtype=np.float32)
    a.reshape(-1)[2] = value
    return a


@pytest.fixture(scope="module")
def res():
    return ov.retrieve(EMB, LABELS, top_n=4, device="cpu")


@pytest.fixture(scope="module")
def cnn():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=0, pretrained=False)


@pytest.fixture(scope="module")
def vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2,
                             num_classes=0, pretrained=False)


# ------------------------------------------------------------------ retrieval
class TestRetrieve:
    @pytest.mark.parametrize("kwargs, exc, match", [
        ({"embeddings": "abc"}, ValueError, "embeddings"),                   # wrong type
        ({"embeddings": EMB[:, 0]}, ValueError, "embeddings must be 2-D"),   # wrong shape
        ({"embeddings": EMB[None]}, ValueError, "embeddings must be 2-D"),
        ({"embeddings": EMB[:0], "labels": LABELS[:0]}, ValueError, "non-empty"),  # empty
        ({"embeddings": with_nan(EMB)}, ValueError, "NaN or inf in rows"),   # NaN
        ({"embeddings": with_nan(EMB, np.inf)}, ValueError, "NaN or inf in rows"),
        ({"labels": None}, TypeError, "labels"),
        ({"labels": LABELS[:5]}, ValueError, "labels has 5 values"),
        ({"is_query": [True] * 3}, ValueError, "is_query has 3 values"),
        ({"is_query": np.arange(N)}, ValueError, "is_query must be booleans"),
        ({"is_gallery": np.zeros(N, bool)}, ValueError, "gallery"),
        ({"sequence_ids": [1, 2]}, ValueError, "sequence_ids has 2 values"),
        ({"top_n": 0}, ValueError, "top_n"),                                 # out of range
        ({"top_n": 1.5}, TypeError, "top_n"),                                # wrong type
        ({"top_n": True}, TypeError, "top_n"),
        ({"distance": "manhattan"}, ValueError, "distance"),
        ({"device": "nonsense"}, ValueError, "device 'nonsense'"),
        ({"device": 3.5}, TypeError, "device"),
        ({"device": BAD_CUDA}, ValueError, "device .* asked for, but"),      # a device the machine lacks
        ({"batch_size": 0}, ValueError, "batch_size"),
    ])
    def test_retrieve(self, kwargs, exc, match):
        args = {"embeddings": EMB, "labels": LABELS, **kwargs}
        with pytest.raises(exc, match=match):
            ov.retrieve(args.pop("embeddings"), args.pop("labels"), **args)


class TestResult:
    @pytest.mark.parametrize("kwargs, exc, match", [
        ({"cmc_top_k": 1}, TypeError, "cmc_top_k must be a sequence"),
        ({"cmc_top_k": ("a",)}, TypeError, "cmc_top_k"),
        ({"cmc_top_k": (0,)}, ValueError, "cmc_top_k"),
        ({"map_top_k": (9,)}, ValueError, "top_n=9"),
        ({"fmr_vals": (1.5,)}, ValueError, "fmr_vals"),
        ({"fmr_vals": (float("nan"),)}, ValueError, "fmr_vals"),
        ({"pcf_variance": (0.0,)}, ValueError, "pcf_variance"),
        ({"categories": ["a"]}, ValueError, "categories"),
    ])
    def test_metrics(self, res, kwargs, exc, match):
        args = {"cmc_top_k": (1,), "precision_top_k": (), "map_top_k": (), **kwargs}
        with pytest.raises(exc, match=match):
            res.metrics(**args)

    @pytest.mark.parametrize("call, exc, match", [
        (lambda r: r.per_query("foo/1"), ValueError, "unknown metric"),
        (lambda r: r.per_query("map/0"), ValueError, "unknown metric"),
        (lambda r: r.per_query(5), ValueError, "unknown metric"),
        (lambda r: r.per_query("map/9"), ValueError, "top_n"),
        (lambda r: r.worst_queries("map/1", -1), ValueError, "n must be an int >= 0, got -1"),
        (lambda r: r.worst_queries("map/1", "3"), TypeError, "n must be an int"),
        (lambda r: r.worst_queries("map/1", 3, "z"), ValueError, "categories"),
        (lambda r: r.worst_queries("map/1", 3, "z", categories=["a"] * N), ValueError, "category 'z' has no queries"),
        (lambda r: r.gt_ids(99), ValueError, "query_id 99"),
    ])
    def test_methods(self, res, call, exc, match):
        with pytest.raises(exc, match=match):
            call(res)


# ------------------------------------------------------------------ figures
class TestPlots:
    @pytest.mark.parametrize("kwargs, exc, match", [
        ({"n_queries": 0}, ValueError, r"n_queries must be a positive int, got 0 \(a figure needs a query\)"),            # was an empty figure
        ({"n_queries": "2"}, TypeError, "n_queries"),
        ({"n_instances": 9}, ValueError, "n_instances=9"),
        ({"n_gt": -1}, ValueError, "n_gt"),
        ({"images": IMAGES[:3]}, ValueError, "images holds 3 items"),
        ({"images": "x.png"}, TypeError, "images must hold N images"),
        ({"images": pd.DataFrame({"label": LABELS})}, ValueError, "path"),
        ({"metric": "foo/1"}, ValueError, "unknown metric"),
        ({"category": "z"}, ValueError, "categor"),
        ({"tile_size": 8}, ValueError, "tile_size"),
        ({"bbox_mode": "zoom"}, ValueError, "bbox_mode"),
        ({"show_labels": "yes"}, TypeError, "show_labels"),
        ({"label_names": 3.5}, TypeError, "label_names"),
    ])
    def test_plot_worst_queries(self, res, kwargs, exc, match):
        args = {"images": IMAGES, "metric": "map/1", "n_queries": 2, "n_instances": 2, **kwargs}
        with pytest.raises(exc, match=match):
            ov.plot_worst_queries(res, args.pop("images"), **args)

    @pytest.mark.parametrize("query_ids, exc, match", [
        ([], ValueError, "query_ids is empty"),
        ([1.5], TypeError, "query_ids must be integer"),
        ([99], ValueError, "item 99 is not a query"),
    ])
    def test_plot_queries(self, res, query_ids, exc, match):
        with pytest.raises(exc, match=match):
            ov.plot_queries(res, IMAGES, query_ids, n_instances=2)

    def test_figure_to_array(self):
        with pytest.raises(TypeError, match="Figure"):
            ov.figure_to_array(np.zeros((3, 3)))


# ------------------------------------------------------------------ explanations
class TestExplainers:
    @pytest.mark.parametrize("image, exc, match", [
        (torch.zeros(3, 32, 32), TypeError, "not a tensor"),
        (5, TypeError, "image must be a path"),
        (np.zeros((8, 8, 5), np.uint8), ValueError, "got shape"),
        (np.zeros((0, 0, 3), np.uint8), ValueError, "empty"),
        (with_nan(np.full((8, 8, 3), 0.5)), ValueError, "NaN or inf"),
        (with_nan(np.full((8, 8, 3), 0.5), np.inf), ValueError, "NaN or inf"),
        ("/nonexistent/image.png", FileNotFoundError, "missing file: /nonexistent/image.png"),
    ])
    @pytest.mark.parametrize("which", ["gradcam_map", "draw_gradcam", "attention_map", "draw_attention"])
    def test_image(self, cnn, vit, which, image, exc, match):
        model = cnn if "gradcam" in which else vit
        with pytest.raises(exc, match=match):
            getattr(ov, which)(model, image)

    @pytest.mark.parametrize("reference, exc, match", [
        (np.zeros(3, np.float32), ValueError, "reference has 3 values but the model's embedding has 512"),
        (np.full(512, np.nan, np.float32), ValueError, "reference holds NaN or inf"),
        (with_nan(np.ones(512), np.inf), ValueError, "reference holds NaN or inf"),
        (np.zeros((2, 512), np.float32), ValueError, r"reference must be one \(D,\) embedding"),
        (np.zeros(0, np.float32), ValueError, "reference is empty"),
        ("abc", TypeError, "reference must be an embedding"),
        ({"a": 1}, TypeError, "reference must be an embedding"),
    ])
    def test_gradcam_reference(self, cnn, reference, exc, match):
        with pytest.raises(exc, match=match):
            ov.gradcam_map(cnn, IMG, reference, input_size=(32, 32))

    @pytest.mark.parametrize("kwargs, exc, match", [
        ({"method": "nope"}, ValueError, "method"),
        ({"target_layer": "layer4"}, TypeError, "target_layer must be a module"),
        ({"target_layer": torch.nn.Linear(2, 2)}, ValueError, "target_layer"),
        ({"input_size": (0, 5)}, ValueError, "input_size"),
        ({"input_size": "ab"}, TypeError, "input_size"),
        ({"input_size": (32.5, 32)}, TypeError, "input_size"),
    ])
    def test_gradcam_arguments(self, cnn, kwargs, exc, match):
        with pytest.raises(exc, match=match):
            ov.gradcam_map(cnn, IMG, **kwargs)

    @pytest.mark.parametrize("kwargs, exc, match", [
        ({"head": 9}, ValueError, "head=9"),
        ({"head": "foo"}, ValueError, "head"),
        ({"block": 7}, ValueError, r"block must be an int in -\d+\.\.\d+, got 7"),
        ({"block": 1.0}, TypeError, r"block must be an int in -\d+\.\.\d+, got 1\.0 \(float\)"),
        ({"input_size": (-8, 32)}, ValueError, "input_size"),
        ({"alpha": 2.0}, ValueError, "alpha"),
        ({"cmap": "no-such-map"}, ValueError, "cmap"),
    ])
    def test_attention_arguments(self, vit, kwargs, exc, match):
        fn = ov.draw_attention if {"alpha", "cmap"} & set(kwargs) else ov.attention_map
        with pytest.raises(exc, match=match):
            fn(vit, IMG, **kwargs)

    @pytest.mark.parametrize("model, exc, match", [("cnn", TypeError, "model must be a torch.nn.Module"),
                                                   (None, TypeError, "model")])
    def test_model_type(self, model, exc, match):
        with pytest.raises(exc, match=match):
            ov.gradcam_map(model, IMG)

    def test_attention_of_a_cnn(self, cnn):
        with pytest.raises(ValueError, match="not a timm vision transformer"):
            ov.attention_map(cnn, IMG)

    @pytest.mark.parametrize("query, result, exc, match", [
        (IMG, "/nonexistent/g.png", FileNotFoundError, "missing file"),
        ("/nonexistent/q.png", IMG, FileNotFoundError, "missing file"),
        (IMG, np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    ])
    def test_explain_pair(self, vit, query, result, exc, match):
        with pytest.raises(exc, match=match):
            ov.explain_pair(vit, query, result)


# ------------------------------------------------------------------ data
class TestData:
    @pytest.fixture
    def csv_header_only(self, tmp_path):
        path = tmp_path / "df.csv"
        path.write_text("label,path,split,is_query,is_gallery\n")
        return path

    def test_header_without_rows(self, csv_header_only):
        from oml_viz.data import read_dataframe

        with pytest.raises(ValueError, match="no rows"):
            read_dataframe(csv_header_only)

    @pytest.mark.parametrize("source, exc, match", [
        (3, TypeError, "source must be a CSV path"),
        ("/nonexistent/df.csv", FileNotFoundError, "/nonexistent/df.csv"),
    ])
    def test_read_dataframe(self, source, exc, match):
        from oml_viz.data import read_dataframe

        with pytest.raises(exc, match=match):
            read_dataframe(source)

    @pytest.mark.parametrize("df, exc, match", [
        ([1, 2], TypeError, "df must be a pandas DataFrame"),
        (pd.DataFrame({"path": ["a.png"]}), ValueError, "label"),
        (pd.DataFrame(columns=["label", "path", "split", "is_query", "is_gallery"]), ValueError, "no rows"),
        (pd.DataFrame({"label": [np.nan], "path": ["a.png"], "split": ["train"], "is_query": [None],
                       "is_gallery": [None]}), ValueError, "label"),
    ])
    def test_validate_dataframe(self, df, exc, match):
        from oml_viz.data import validate_dataframe

        with pytest.raises(exc, match=match):
            validate_dataframe(df, check_files=False)


# ------------------------------------------------------------------ extraction
@pytest.fixture(scope="module")
def extractor():
    from oml_viz.models import ResnetExtractor

    torch.manual_seed(0)
    return ResnetExtractor("resnet18")


class TestExtract:
    @pytest.mark.parametrize("images, kwargs, exc, match", [
        ([IMG], {"device": BAD_CUDA}, ValueError, "device .* asked for, but"),
        ([IMG], {"device": 1.5}, TypeError, "device"),
        ([IMG], {"batch_size": 0}, ValueError, "batch_size"),
        ([IMG], {"input_size": (0, 4)}, ValueError, "input_size"),
        ([IMG], {"input_size": "ab"}, TypeError, "input_size"),
        (["/nonexistent/a.png"], {}, FileNotFoundError, "missing file"),
        ([], {}, ValueError, "images is empty"),
        ("x.png", {}, TypeError, "images must hold N images"),
        ([with_nan(np.full((8, 8, 3), 0.5))], {}, ValueError, "NaN or inf"),
    ])
    @pytest.mark.parametrize("how", ["method", "function"])
    def test_extract(self, extractor, how, images, kwargs, exc, match):
        from oml_viz.models import extract_embeddings

        with pytest.raises(exc, match=match):
            if how == "method":
                extractor.extract(images, progress=False, **kwargs)
            else:
                extract_embeddings(extractor, images, progress=False, **kwargs)


# ------------------------------------------------------------------ panels
class TestPanels:
    @pytest.mark.parametrize("make, exc, match", [
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).MetricsPanel(r, metric="foo/1"), ValueError,
         "metric"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).MetricsPanel(r, categories=["a"]), ValueError,
         "categories"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).WorstQueriesPanel(r, IMAGES, n_queries=0),
         ValueError, "n_queries"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).WorstQueriesPanel(r, IMAGES, n_instances=9),
         ValueError, "n_instances=9"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).WorstQueriesPanel(r, IMAGES[:2], n_instances=3),
         ValueError, "images"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).GradCAMPanel(m, IMAGES, methods=("nope",)),
         ValueError, "methods"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).GradCAMPanel(m, IMAGES, layers=("nope",)),
         ValueError, "layers"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).GradCAMPanel(m, IMAGES, item_ids=[99]),
         ValueError, "item_ids"),
        (lambda r, m: __import__("oml_viz.widgets", fromlist=["x"]).AttentionPanel(m, IMAGES), ValueError,
         "vision transformer"),
    ])
    def test_panels(self, res, cnn, make, exc, match):
        pytest.importorskip("ipywidgets")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(exc, match=match):
                make(res, cnn)
