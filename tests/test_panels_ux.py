"""What a user sees of the panels: no empty room above images, labels shown whole, one list of
metrics for every panel, and a result no panel changes."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

import oml_viz as ov
from oml_viz.render.text import get_font
from oml_viz.widgets import GradCAMPanel, MetricsPanel, PngCache, WorstQueriesPanel
from oml_viz.widgets.items import result_metric_args, result_metric_names
from oml_viz.widgets.slot import ImageSlot

torch.set_num_threads(2)
PNG = b"\x89PNG-fake"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    emb = np.eye(6, dtype=np.float32)[labels] + rng.normal(0, 0.5, (len(labels), 6)).astype(np.float32)
    images = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in labels]
    cats = np.where(labels < 3, "low", "high").astype(object)
    return ov.retrieve(emb, labels, top_n=6, device="cpu"), images, cats


# ------------------------------------------------------------------ the busy bar
def test_hidden_busy_bar_takes_no_room():
    """Hidden with ``visibility`` the bar kept ~50 px of empty space above each image."""
    slot = ImageSlot(PngCache())
    assert slot.progress.layout.display == "none" and slot.progress.layout.visibility != "hidden"
    started, release = threading.Event(), threading.Event()

    def make():
        started.set()
        release.wait(10)
        return PNG

    slot.show("k", make)
    assert started.wait(10)
    assert slot.progress.layout.display != "none", "the bar shows while rendering"
    release.set()
    slot.wait()
    assert slot.png == PNG and slot.progress.layout.display == "none"
    slot.close()


def test_every_panel_starts_with_its_bars_hidden(data):
    res, images, _ = data
    for panel in (MetricsPanel(res), WorstQueriesPanel(res, images, n_queries=2, n_instances=3)):
        assert panel._slots and all(s.progress.layout.display == "none" for s in panel._slots)
        panel.close()


def test_close_while_rendering_leaves_the_closed_widgets_alone():
    """A render still running when its panel closes finishes without an error (none raised, none
    swallowed into the status line) and without writing into the closed widgets; one queued
    behind it never runs."""
    slot = ImageSlot(PngCache())
    slot.show("first", lambda: PNG)
    slot.wait()
    status = slot.status.value
    failures = []
    fail = slot._fail
    slot._fail = lambda gen, message: (failures.append(message), fail(gen, message))
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        started.set()
        release.wait(10)
        calls.append("slow")
        return b"\x89PNG-late"

    slot.show("slow", slow)
    assert started.wait(10)
    (fut,) = list(slot._futures)
    slot.show("queued", lambda: calls.append("queued") or PNG)
    slot.close()
    release.set()
    assert fut.exception(timeout=10) is None
    slot.wait()
    assert calls == ["slow"], "a render queued before close ran after it"
    assert failures == [], f"an exception was swallowed into the status line: {failures}"
    assert slot.image.comm is None and slot.progress.comm is None
    assert slot.png == PNG and slot.status.value == status and slot.error is None, "a closed widget was written to"


# ------------------------------------------------------------------ Grad-CAM target buttons
def test_gradcam_target_buttons_show_their_labels_whole():
    from oml_viz.models import ResnetExtractor

    torch.manual_seed(0)
    cnn = ResnetExtractor("resnet18")
    images = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(3)]
    panel = GradCAMPanel(cnn, images, item_ids=[0, 1], methods=("gradcam",), input_size=(64, 64))
    width = int(panel.target.style.button_width.rstrip("px"))
    font = get_font(13)  # JupyterLab's UI font size; DejaVu is wider than the usual UI fonts
    for label in panel.target._options_labels:
        assert font.getlength(label) + 2 * 12 <= width, f"{label!r} does not fit a {width} px button"
    panel.close()


# ------------------------------------------------------------------ one list of metrics
def test_metrics_and_worst_queries_offer_the_same_metrics(data):
    res, images, _ = data
    names = result_metric_names(res)
    assert "fnmr@fmr/0.1" in names and {"cmc/1", "precision/5", "map/6", "cmc/3"} <= set(names)
    metrics = MetricsPanel(res)
    worst = WorstQueriesPanel(res, images, n_queries=2, n_instances=3)
    assert list(metrics.metric.options) == names
    assert list(worst.metric.options) == result_metric_names(res, per_query_only=True)
    assert list(worst.metric.options) == [n for n in names if not n.startswith(("fnmr", "pcf"))]
    expected = res.metrics(**result_metric_args(res))
    assert list(metrics.table.columns) == list(expected.columns)
    np.testing.assert_allclose(metrics.table.to_numpy(float), expected.to_numpy(float))
    metrics.metric.value = "fnmr@fmr/0.1"  # the column res.metrics shows is selectable and drawn
    metrics.wait()
    assert metrics.plot.error is None
    for panel in (metrics, worst):
        panel.close()


def test_small_top_n_keeps_only_answerable_metrics():
    res = ov.retrieve([[0.0], [1.0], [5.0], [6.0], [7.0]], [0, 0, 1, 1, 1], top_n=2, device="cpu")
    assert result_metric_names(res, per_query_only=True) == ["cmc/1", "cmc/2", "precision/1", "precision/2",
                                                            "map/1", "map/2"]
    for name in result_metric_names(res, per_query_only=True):
        res.per_query(name)  # every offered metric can be computed


# ------------------------------------------------------------------ results are values
def test_panels_and_metrics_leave_the_result_unchanged(data):
    res, images, cats = data
    plain = ov.retrieve(res.embeddings, res.labels, top_n=6, device="cpu")
    before = plain.metrics()
    plain.metrics(categories=cats)
    assert plain.categories is None, "metrics(categories=...) changed the result"
    with pytest.raises(ValueError, match="categories"):
        plain.worst_queries("map/5", 3, "low")  # needs categories given explicitly
    assert plain.worst_queries("map/5", 3, "low", categories=cats).tolist() == \
        [int(i) for i in plain.worst_queries("map/5", 30) if cats[i] == "low"][:3]
    panel = MetricsPanel(plain, categories=cats)
    assert list(panel.table.index) == ["OVERALL", "high", "low"]
    assert plain.categories is None
    assert list(plain.metrics().index) == list(before.index) == ["OVERALL"]
    panel.close()
    with_cats = ov.retrieve(res.embeddings, res.labels, top_n=6, device="cpu", categories=cats)
    other = np.array(["a", "b"] * 15, dtype=object)
    assert list(with_cats.metrics(categories=other).index) == ["OVERALL", "a", "b"]
    assert list(with_cats.categories) == list(cats), "the categories given to retrieve stay"
    assert list(with_cats.metrics().index) == ["OVERALL", "high", "low"]


def test_worst_queries_panel_warns_once_about_relative_paths(data, tmp_path, monkeypatch):
    import warnings

    import pandas as pd

    res, _, _ = data
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"path": [f"img/{i}.png" for i in range(len(res.labels))], "label": res.labels})
    with pytest.warns(UserWarning, match=rf"looked up in {tmp_path}"):
        panel = WorstQueriesPanel(res, df, n_queries=2, n_instances=3, label_names={0: "zero"},
                                  background=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        panel.next_page()
        panel.wait()
    assert panel.grid.error is None and panel.page == 1
    panel.close()
    with pytest.raises(ValueError, match="label_names"):
        WorstQueriesPanel(res, df, label_names="no such column")


# ------------------------------------------------------------------ the report
@pytest.mark.slow
def test_report_describes_models_and_its_gradcam_target(data, tmp_path):
    """report.html named the ViT 'vit_tiny_patch16_224' though it had patch 8 and 2 blocks, and
    listed a gallery item under a Grad-CAM image of the item's own embedding."""
    import html as html_lib

    from oml_viz.models import ResnetExtractor, ViTExtractor
    from oml_viz.models.describe import describe_model, parameter_count
    from oml_viz.widgets import Dashboard

    res, images, _ = data
    torch.manual_seed(0)
    vit = ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2)
    cnn = ResnetExtractor("resnet18", layers=[1, 1, 1, 1], channels=[8, 16, 32, 64])
    dash = Dashboard(res, images, model=vit, cnn=cnn, item_ids=[0, 1], background=False,
                     gradcam_kwargs={"methods": ("gradcam",), "input_size": (32, 32)})
    try:
        page = html_lib.unescape(dash.save_html(tmp_path / "r.html").read_text())
        text = describe_model(vit)
        assert text in page
        for fact in ("vit_tiny_patch16_224(", "img_size=32", "patch_size=8", "embed_dim=32", "depth=2", "num_heads=2"):
            assert fact in text
        assert f"{parameter_count(vit) / 1e3:.3g} k parameters" in text
        assert describe_model(cnn) in page and "channels=[8, 16, 32, 64]" in describe_model(cnn)
        cam = page.split("Grad-CAM", 1)[1]
        assert "item 0 toward its own embedding" in cam and "gallery" not in cam.split("<img", 1)[0]
        q, g = int(res.query_ids[1]), int(res.retrieved_ids[1, 0])
        dash.gradcam.show_item(q, gallery=g)
        dash.wait()
        cam = html_lib.unescape(dash.save_html(tmp_path / "r2.html").read_text()).split("Grad-CAM", 1)[1]
        assert f"item {q} toward the embedding of item {g}" in cam and "own embedding" not in cam.split("<img", 1)[0]
    finally:
        dash.close()
