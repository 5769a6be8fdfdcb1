"""Widget panels: programmatic clicks and value changes give the expected state and images."""
from __future__ import annotations

import base64
import importlib.util
import os
import re
import shutil
import stat
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("ipywidgets")

import oml_viz as ov
from oml_viz.datasets import make_demo_dataset
from oml_viz.explain import draw_attention
from oml_viz.models import ResnetExtractor, ViTExtractor
from oml_viz.widgets import (
    AttentionPanel,
    Dashboard,
    GradCAMPanel,
    MetricsPanel,
    PngCache,
    WorstQueriesPanel,
    target_layer_names,
)
from oml_viz.widgets.png import captioned_strip, png_to_rgb, upscale

torch.set_num_threads(2)
CAM = dict(input_size=(64, 64))
# the Map tab needs the `maps` extra (umap-learn, jupyter-scatter): `make test` has it, the
# lowest-version environment of .ci/lowest does not, and there the dashboard leaves the tab out
HAS_MAPS = all(importlib.util.find_spec(m) is not None for m in ("umap", "jscatter"))
MAP = ["Map"] if HAS_MAPS else []


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    df = make_demo_dataset(root, n_classes=8, images_per_class=5, size=32, progress=False)
    rng = np.random.default_rng(0)
    labels = df["label"].to_numpy()
    # embeddings that retrieve well but not perfectly: a mix of relevant and wrong results
    emb = np.eye(8, dtype=np.float32)[labels] + rng.normal(0, 0.45, (len(df), 8)).astype(np.float32)
    res = ov.retrieve(emb, labels, top_n=6)
    return df, res


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return ResnetExtractor("resnet18")


def descendants(widget):
    out = [widget]
    for child in getattr(widget, "children", ()) or ():
        out += descendants(child)
    return out


# ------------------------------------------------------------------ cache and images
def test_png_cache_is_lru_and_bounded():
    c = PngCache(max_items=2, max_bytes=10)
    c.put("a", b"12345")
    c.put("b", b"12345")
    assert c.get("a") == b"12345"  # a is now the most recent
    c.put("c", b"1")  # over 10 bytes: the least recent (b) goes
    assert c.get("b") is None and c.get("a") is not None and c.get("c") == b"1"
    c.put("big", b"x" * 11)
    assert "big" not in c and len(c) == 2
    c = PngCache()
    arr = np.zeros(3, np.float32)
    c.put("arr", arr)
    arr[0] = 5
    assert c.get("arr")[0] == 0
    with pytest.raises(ValueError):
        c.get("arr")[0] = 1  # cached arrays are read-only copies
    with pytest.raises(TypeError, match="bytes or numpy"):
        c.put("x", "text")


def test_captioned_strip_places_images_at_the_same_scale():
    a = np.full((16, 16, 3), 10, np.uint8)
    b = np.full((16, 16, 3), 200, np.uint8)
    strip = captioned_strip([a, b], ["a", "b"], side=64)
    assert strip.shape[1] == 8 + 2 * (64 + 8)
    # centre pixel of each tile is the image's colour
    y = strip.shape[0] - 8 - 32
    assert (strip[y, 8 + 32] == 10).all() and (strip[y, 8 + 72 + 32] == 200).all()


# ------------------------------------------------------------------ metrics
def test_metrics_panel_table_comes_from_the_engine_and_selector_redraws(data):
    df, res = data
    panel = MetricsPanel(res, df["category"].to_numpy())
    expected = res.metrics(categories=df["category"].to_numpy())
    np.testing.assert_allclose(panel.table[expected.columns].to_numpy(float), expected.to_numpy(float))
    assert list(panel.table.index) == ["OVERALL", *sorted(df["category"].unique())]
    # the CMC curve holds every k up to top_n and is non-decreasing
    curve = panel.curve_table.loc["OVERALL"].to_numpy()
    assert len(curve) == 6 and (np.diff(curve) >= 0).all()
    first = panel.plot.png
    assert first[:4] == b"\x89PNG" and panel.plot.error is None
    assert "background:#fff3c4" in panel.table_html.value.split("map/5")[0].rsplit("<th", 1)[1]
    panel.metric.value = "cmc/1"
    panel.wait()
    assert panel.plot.png != first and panel.plot.error is None
    head = re.search(r"<th style='([^']*)'>cmc/1</th>", panel.table_html.value)
    assert head and "#fff3c4" in head.group(1)
    hits = panel.cache.hits
    panel.metric.value = "map/5"  # back: from cache, at once, identical bytes
    assert panel.plot.png == first and panel.cache.hits == hits + 1 and not panel.plot.busy
    panel.close()


# ------------------------------------------------------------------ worst queries
def test_worst_queries_pages_follow_the_engine_order(data):
    df, res = data
    panel = WorstQueriesPanel(res, df, metric="precision/5", n_queries=3, n_instances=4)
    widgets = [id(wd) for wd in descendants(panel)]
    order = res.worst_queries("precision/5", len(res.query_ids))
    assert panel.page_query_ids == order[:3].tolist()
    assert panel.prev_button.disabled and not panel.next_button.disabled
    first = panel.grid.png
    panel.next_button.click()
    panel.wait()
    assert panel.page == 1 and panel.page_query_ids == order[3:6].tolist()
    assert panel.grid.png != first and panel.grid.error is None
    assert "page <b>2</b>" in panel.page_label.value
    panel.go_to_page(10_000)
    assert panel.page == panel.n_pages - 1 and panel.next_button.disabled
    assert panel.n_pages == -(-len(order) // 3)
    panel.prev_button.click()
    panel.wait()
    assert panel.page == panel.n_pages - 2
    panel._buttons[0][1].click()
    panel.wait()
    assert [id(wd) for wd in descendants(panel)] == widgets  # updated in place, nothing rebuilt
    panel.close()


def test_worst_queries_metric_category_and_n_instances(data):
    df, res = data
    cats = df["category"].to_numpy()
    panel = WorstQueriesPanel(res, df, n_queries=2, n_instances=3, background=False)
    panel.next_page()
    panel.metric.value = "cmc/1"
    assert panel.page == 0 and panel.page_query_ids == res.worst_queries("cmc/1", 2).tolist()
    cat = sorted(set(cats))[1]
    panel.category.value = cat
    assert all(cats[q] == cat for q in panel._order())
    assert panel._order().tolist() == res.worst_queries("cmc/1", 100, cat, categories=cats).tolist()
    narrow = png_to_rgb(panel.grid.png).shape[1]
    panel.n_instances.value = 5
    assert png_to_rgb(panel.grid.png).shape[1] > narrow  # more result columns in the grid
    shown = [b for b in panel._buttons[0] if b.layout.display != "none"]
    assert len(shown) == 5
    panel.close()


def test_result_buttons_match_relevance_and_open_the_pair(data, vit):
    df, res = data
    panel = WorstQueriesPanel(res, df, model=vit, n_queries=2, n_instances=4)
    qid = panel.page_query_ids[1]
    row = int(np.searchsorted(res.query_ids, qid))
    for c, b in enumerate(panel._buttons[1][:4]):
        relevant = bool(res.is_relevant[row, c])
        assert b.button_style == ("success" if relevant else "danger")
        assert f"item {int(res.retrieved_ids[row, c])}" in b.tooltip
    assert panel.pair.png == b""
    panel._buttons[1][2].click()  # the third result of the second query
    panel.wait()
    assert panel.selected == (qid, 3) and panel.pair.error is None
    pair = png_to_rgb(panel.pair.png)
    assert pair.shape[1] == 8 + 4 * (192 + 8)  # query, its map, the result's map, the result
    assert f"item {int(res.retrieved_ids[row, 2])}" in panel.pair_title.value
    before = panel.pair.png
    panel.select(qid, 1)
    panel.wait()
    assert panel.pair.png != before
    with pytest.raises(ValueError, match="rank"):
        panel.select(qid, 99)
    with pytest.raises(ValueError, match="not a query"):
        panel.select(10_000, 1)
    panel.close()


def test_fast_clicks_end_on_the_last_state(data):
    df, res = data
    panel = WorstQueriesPanel(res, df, n_queries=2)
    for _ in range(3):
        panel.next_button.click()
    panel.wait()
    assert panel.page == 3
    key = ("grid", panel.metric.value, panel.category.value, 3, panel.n_instances.value)
    assert panel.grid.key == key and panel.grid.png == panel.cache.get(key)
    panel.close()


def test_bad_arguments_are_named(data):
    df, res = data
    with pytest.raises(ValueError, match="n_instances"):
        WorstQueriesPanel(res, df, n_instances=7)
    with pytest.raises(ValueError, match="top_n"):
        WorstQueriesPanel(res, df, metric="map/9")
    with pytest.raises(ValueError, match="images holds"):
        WorstQueriesPanel(res, df.iloc[:5])


# ------------------------------------------------------------------ attention
def test_attention_panel_shows_the_explainer_output_for_its_state(data, vit):
    df, res = data
    panel = AttentionPanel(vit, df, res=res, item_ids=[3, 7], side=64)
    assert panel.item.value == 3 and panel.n_blocks == 2 and panel.n_heads == 2
    mean_png = panel.view.png
    panel.head.value = 1
    panel.wait()
    assert panel.view.png != mean_png and panel.view.error is None
    img = panel.items.image(3)
    want = upscale(draw_attention(vit, img, block=1, head=1, alpha=0.5), 64)
    shown = png_to_rgb(panel.view.png)
    top = shown.shape[0] - 8 - 64
    np.testing.assert_array_equal(shown[top:top + 64, 8 + 72:8 + 72 + 64], want)
    n_heats = len(panel.heats)
    panel.alpha.value = 0.0  # only the blend changes: no new heat map, overlay == image
    panel.wait()
    assert len(panel.heats) == n_heats
    shown = png_to_rgb(panel.view.png)
    np.testing.assert_array_equal(shown[top:top + 64, 80:144], shown[top:top + 64, 8:72])
    panel.alpha.value = 0.5
    for change in (("rollout", True), ("block", 0), ("head", "max"), ("item", 7)):
        before = panel.view.png
        getattr(panel, change[0]).value = change[1]
        panel.wait()
        assert panel.view.png != before and panel.view.error is None, change
    assert panel.state == {"item": 7, "head": "max", "block": 0, "rollout": True, "alpha": 0.5}
    panel.close()


def test_attention_panel_needs_a_vit_and_valid_items(data, cnn):
    df, _ = data
    with pytest.raises(ValueError, match="not a timm vision transformer"):
        AttentionPanel(cnn, df)
    with pytest.raises(ValueError, match="item_ids"):
        AttentionPanel(ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=16,
                                    num_heads=1), df, item_ids=[len(df)])


def test_broken_image_shows_an_error_and_the_panel_goes_on(data, vit, tmp_path):
    df, _ = data
    root = tmp_path / "copy"
    shutil.copytree(df.attrs["dataset_root"], root)
    broken = df.copy()
    broken.attrs["dataset_root"] = str(root)
    (root / broken["path"][1]).unlink()
    panel = AttentionPanel(vit, broken, item_ids=[0, 1])
    good = panel.view.png
    panel.item.value = 1
    panel.wait()
    assert panel.view.error and "No such file" in panel.view.error or "missing" in panel.view.error
    assert panel.view.png == good  # the last good view stays
    assert "color:#b00" in panel.view.status.value
    panel.item.value = 0
    assert panel.view.error is None and panel.view.png == good
    panel.close()


# ------------------------------------------------------------------ grad-cam
def test_gradcam_panel_targets_methods_and_layers(data, cnn):
    df, res = data
    qid = int(res.worst_queries("map/5", 1)[0])
    panel = GradCAMPanel(cnn, df, res=res, item_ids=[qid], methods=("gradcam", "layercam"), **CAM)
    assert panel.layer.options[0] == "layer4.1" == target_layer_names(cnn)[0]
    row = int(np.searchsorted(res.query_ids, qid))
    assert [v for _, v in panel.gallery.options] == res.retrieved_ids[row].tolist()
    assert panel.gallery.disabled
    own = panel.view.png
    assert png_to_rgb(own).shape[1] == 8 + 2 * (224 + 8)
    panel.target.value = "gallery"
    panel.wait()
    assert not panel.gallery.disabled and panel.view.error is None
    assert png_to_rgb(panel.view.png).shape[1] == 8 + 4 * (224 + 8)
    seen = {panel.view.png}
    panel.gallery.value = panel.gallery.options[2][1]
    panel.wait()
    panel.method.value = "layercam"
    panel.wait()
    panel.layer.value = "layer3"
    panel.wait()
    seen |= {panel.view.png}
    assert len(seen) == 2 and panel.view.error is None
    assert panel.state["layer"] == "layer3" and panel.state["target"] == "gallery"
    with pytest.raises(ValueError, match="methods"):
        GradCAMPanel(cnn, df, methods=("nope",))
    with pytest.raises(ValueError, match="layers"):
        GradCAMPanel(cnn, df, layers=("layer9",))
    panel.close()


def test_gradcam_on_a_vit_uses_block_norms(vit):
    assert target_layer_names(vit)[:2] == ["blocks.1.norm1", "blocks.0.norm1"]


# ------------------------------------------------------------------ export, dashboard, close
def test_export_png_writes_the_current_view(data, vit, tmp_path):
    df, res = data
    panel = AttentionPanel(vit, df, item_ids=[2])
    path = panel.export_png(tmp_path / "attn.png")
    assert path.read_bytes() == panel.view.png
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as a plain open() would make it
    assert [p.name for p in tmp_path.iterdir()] == ["attn.png"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        panel.export_png(tmp_path / "no" / "x.png")
    assert not (tmp_path / "no").exists()
    wq = WorstQueriesPanel(res, df, n_queries=2)
    wq.select(wq.page_query_ids[0], 1)
    wq.wait()
    both = png_to_rgb(wq.export_png(tmp_path / "wq.png").read_bytes())
    assert both.shape[0] == png_to_rgb(wq.grid.png).shape[0] + png_to_rgb(wq.pair.png).shape[0]
    panel.close()
    wq.close()


def test_dashboard_tabs_report_and_close(data, vit, cnn, tmp_path):
    df, res = data
    evil = np.array(["<script>alert(1)</script>" if c == df["category"][0] else c for c in df["category"]],
                    dtype=object)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dash = Dashboard(res, df, model=vit, cnn=cnn, categories=evil, gradcam_kwargs=CAM)
    assert list(dash.panels) == ["Metrics", "Worst queries", "Attention", "Grad-CAM", "Confusions", *MAP,
                                 "Data issues"]
    assert HAS_MAPS or any("Map tab left out" in str(w.message) for w in caught)
    assert dash.panels["Worst queries"].model is vit and dash.panels["Grad-CAM"].model is cnn
    dash.worst.next_page()
    dash.wait()
    out = dash.save_html(tmp_path / "report & <co>.html")
    text = out.read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("data:image/png;base64,") == 6 + len(MAP)
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert base64.b64decode(imgs[1]) == dash.worst.view_png()  # the current page, not the first
    assert "page 2 of" in text
    widgets = descendants(dash)
    assert all(wd.comm is not None for wd in widgets)
    dash.close()
    assert all(wd.comm is None for wd in widgets)
    assert len(dash.worst.cache) == 0


def test_dashboard_without_models_has_two_tabs(data):
    df, res = data
    dash = Dashboard(res, df)
    assert list(dash.panels) == ["Metrics", "Worst queries", "Confusions", *MAP, "Data issues"]
    dash.worst.select(dash.worst.page_query_ids[0], 1)
    dash.wait()
    assert png_to_rgb(dash.worst.pair.png).shape[1] == 8 + 2 * (192 + 8)  # the two images, no maps
    dash.close()


def test_close_while_rendering_is_safe(data, vit):
    """A render asked for just before close neither runs nor writes into the closed widgets, and
    no exception is raised or swallowed into the status line (see also tests/test_panels_ux.py)."""
    import threading

    from oml_viz.widgets.slot import worker

    df, _ = data
    panel = AttentionPanel(vit, df, item_ids=[0, 1, 2])
    shown, status = panel.view.png, panel.view.status.value
    failures = []
    fail = panel.view._fail
    panel.view._fail = lambda gen, message: (failures.append(message), fail(gen, message))
    release = threading.Event()
    blocker = worker().submit(release.wait, 10)  # the shared worker is busy: the render queues
    panel.item.value = 1
    pending = list(panel.view._futures)
    assert pending and panel.view.busy
    panel.close()
    release.set()
    blocker.result(10)
    assert all(f.cancelled() or f.exception(10) is None for f in pending)
    assert failures == [], f"swallowed: {failures}"
    assert panel.view.image.comm is None
    assert panel.view.png == shown and panel.view.status.value == status, "a closed widget was written to"


def test_panels_over_plain_arrays_without_categories():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 3)
    images = [rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(len(labels))]
    emb = np.eye(4, dtype=np.float32)[labels] + rng.normal(0, 0.6, (len(labels), 4)).astype(np.float32)
    res = ov.retrieve(emb, labels, top_n=3)
    metrics = MetricsPanel(res)
    from oml_viz.widgets.items import result_metric_names

    assert list(metrics.table.index) == ["OVERALL"] and list(metrics.table.columns) == result_metric_names(res)
    assert "cmc/5" not in metrics.table.columns and metrics.metric.value == "map/3"  # k above top_n: dropped
    with pytest.raises(ValueError, match="metric"):
        MetricsPanel(res, metric="map/5")
    wq = WorstQueriesPanel(res, images, n_queries=5, n_instances=3)
    assert wq.category.disabled and wq.n_pages == 3 and wq.grid.error is None
    assert wq.metric.value == "map/3" and wq.page_query_ids == res.worst_queries("map/3", 5).tolist()
    for panel in (metrics, wq):
        panel.close()


def test_dashboard_tabs_follow_the_clicked_result(data, vit, cnn):
    df, res = data
    dash = Dashboard(res, df, model=vit, cnn=cnn, item_ids=[0, 1], gradcam_kwargs=CAM)
    qid = int(res.query_ids[7])
    gid = int(res.retrieved_ids[7, 1])
    dash.worst.select(qid, 2)
    assert dash.attention.item.value == 0  # hidden tabs do not render on a click elsewhere
    dash.tabs.selected_index = list(dash.panels).index("Attention")
    dash.wait()
    assert dash.attention.item.value == qid and dash.attention.view.error is None
    assert dash.attention.view.key[1] == qid
    dash.tabs.selected_index = list(dash.panels).index("Grad-CAM")
    dash.wait()
    cam = dash.gradcam
    assert (cam.item.value, cam.target.value, cam.gallery.value) == (qid, "gallery", gid)
    assert cam.view.key == ("gradcam", qid, cam.method.value, cam.layer.value, "gallery", gid)
    assert not cam.gallery.disabled and cam.view.error is None
    dash.close()
