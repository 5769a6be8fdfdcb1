"""EmbeddingMapPanel, DataIssuesPanel, plot_pairs and their Dashboard tabs / report sections."""
from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

import oml_viz as ov
from oml_viz.widgets import DataIssuesPanel, EmbeddingMapPanel
from oml_viz.widgets.png import png_to_rgb


@pytest.fixture(scope="module")
def data():
    """4 clusters x 15 items with 2 flipped labels and a cross-split near copy (item 11 of item 10)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 4
    truth = np.repeat(np.arange(4), 15)
    emb = (centres[truth] + rng.normal(size=(60, 8)) * 0.3).astype(np.float32)
    emb[11] = emb[10] + 1e-4
    labels = truth.copy()
    labels[[3, 33]] = [2, 0]
    colours = rng.integers(0, 255, (4, 3))
    images = [np.full((24, 24, 3), colours[t], np.uint8) for t in truth]
    df = pd.DataFrame({"label": labels, "split": np.where(np.arange(60) % 2 == 0, "train", "validation"),
                       "category": np.where(truth < 2, "low", "high")})
    res = ov.retrieve(emb, labels, top_n=5, categories=df["category"])
    return emb, labels, truth, images, df, res


def descendants(widget):
    out = [widget]
    for child in getattr(widget, "children", ()) or ():
        out += descendants(child)
    return out


def test_map_panel_colours_selection_grid_and_close(data):
    emb, labels, truth, images, df, res = data
    panel = EmbeddingMapPanel(res, images, method="pca", background=False)
    np.testing.assert_array_equal(panel.xy, ov.project(emb, method="pca"))
    assert panel.scatter.widget is panel.map
    assert set(panel.color.options) >= {"label", "category", "label_issue", "map/5", "cmc/1"}
    assert panel.data["label"].tolist() == [str(v) for v in labels]
    empty = panel.grid.png
    panel.select([3, 33, 7])
    panel.wait()
    assert panel.selected == [3, 33, 7] and "3 selected" in panel.selection_info.value
    assert list(panel.map.selection) == [3, 33, 7]  # the scatter shows the selection too
    grid = png_to_rgb(panel.grid.png)
    assert grid.shape[1] > png_to_rgb(empty).shape[1]  # three tiles, not the placeholder
    panel.map.selection = np.array([5, 6], dtype=np.uint32)  # what a lasso in the browser sends
    panel.wait()
    assert panel.selected == [5, 6]
    panel.color.value = "label_issue"
    values = panel.color_values()
    assert values[3] > 0.5 and values[33] > 0.5 and np.median(values) < 0.3
    panel.color.value = "map/5"
    np.testing.assert_allclose(panel.color_values(), res.per_query("map/5"))
    png = panel.view_png()
    assert png_to_rgb(png).shape[0] > grid.shape[0]  # the static map above the grid
    widgets = descendants(panel)
    panel.close()
    assert all(wd.comm is None for wd in widgets)


def test_map_panel_from_coordinates_and_bad_input(data):
    emb, labels, truth, images, df, res = data
    xy = np.random.default_rng(1).normal(size=(60, 2))
    panel = EmbeddingMapPanel(xy, images, labels=labels, categories=df["category"], color_by="category",
                              background=False)
    assert list(panel.color.options) == ["label", "category"]
    panel.close()
    with pytest.raises(ValueError, match="color_by must be one of"):
        EmbeddingMapPanel(xy, images, color_by="label_issue")
    with pytest.raises(ValueError, match=r"\(N, 2\) coordinates"):
        EmbeddingMapPanel(xy[:, :1], images)
    with pytest.raises(ValueError, match="holds 59 items but the map has 60"):
        EmbeddingMapPanel(xy, images[:59])
    with pytest.raises(ValueError, match=r"item_ids.*60"):
        p = EmbeddingMapPanel(xy, images, background=False)
        try:
            p.select([60])
        finally:
            p.close()


def test_data_issues_panel_views_threshold_and_pages(data):
    emb, labels, truth, images, df, res = data
    panel = DataIssuesPanel(emb, images, labels=labels, splits=df["split"], n_per_page=2, background=False)
    assert set(panel.issues.index[:2]) == {3, 33}
    assert panel.issues.loc[3, "suggested_label"] == 0 and panel.issues.loc[33, "suggested_label"] == 2
    pairs = panel.pairs()
    assert (10, 11) in set(zip(pairs["id_a"], pairs["id_b"]))
    assert pairs.set_index(["id_a", "id_b"]).loc[(10, 11), "cross_split"]
    first = panel.image.png
    panel.view.value = "leaks"
    panel.wait()
    assert panel.image.png != first and panel.page == 0
    panel.threshold.value = 0.0  # only exact copies remain: none here
    panel.wait()
    assert len(panel.pairs()) == 0
    panel.threshold.value = panel.threshold.max * 50  # above every cut searched: the engine runs again
    assert len(panel.pairs()) > 1
    panel.view.value = "label issues"
    panel.go_to_page(99)
    assert panel.page == panel.n_pages - 1 == 29
    widgets = descendants(panel)
    panel.close()
    assert all(wd.comm is None for wd in widgets)


def test_plot_pairs_draws_rows_and_names_bad_input(data):
    emb, labels, truth, images, df, res = data
    dups = ov.find_duplicates(emb, splits=df["split"], labels=labels)
    fig = ov.plot_pairs(dups, images, n=3, splits=df["split"])
    assert "1 of 1 pairs" in fig._suptitle.get_text()
    assert any("leak" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(ValueError, match=r"lacks the columns \['distance'\]"):
        ov.plot_pairs(dups.drop(columns="distance"), images)
    with pytest.raises(ValueError, match=r"ids outside 0..59 in rows \[0\]"):
        ov.plot_pairs(pd.DataFrame({"id_a": [0], "id_b": [60], "distance": [0.1]}), images)
    with pytest.raises(TypeError, match="pairs must be a DataFrame"):
        ov.plot_pairs([(0, 1)], images)


def test_dashboard_has_map_and_data_issues_tabs_and_report_sections(data, tmp_path):
    from oml_viz.widgets import Dashboard

    emb, labels, truth, images, df, res = data
    dash = Dashboard(res, images, map_method="pca", background=False)
    assert {"Map", "Data issues"} <= set(dash.panels)
    dash.embedding_map.select([3, 4])
    dash.wait()
    text = dash.save_html(tmp_path / "report.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", text)
    assert heads[-2:] == ["Map", "Data issues"]
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert base64.b64decode(imgs[heads.index("Map")]) == dash.embedding_map.view_png()
    assert "2 selected" in text
    dash.close()
    no_tabs = Dashboard(res, images, map_method=None, data_issues=False)
    assert "Map" not in no_tabs.panels and "Data issues" not in no_tabs.panels
    no_tabs.close()


def test_data_issues_panel_reuses_a_leave_one_out_result(data, monkeypatch):
    """Given the leave-one-out result it needs (k columns), the panel runs no search of its own,
    and finds what a panel from the bare embeddings finds."""
    import oml_viz.engine as engine

    emb, labels, truth, images, df, res = data
    res10 = ov.retrieve(emb, labels, top_n=10)
    reference = DataIssuesPanel(emb, images, labels=labels, splits=df["split"], background=False)
    calls = []
    real = engine.retrieve
    monkeypatch.setattr(engine, "retrieve", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    panel = DataIssuesPanel(res10, images, splits=df["split"], background=False)
    assert calls == []
    pd.testing.assert_frame_equal(panel.issues, reference.issues)
    pd.testing.assert_frame_equal(panel.duplicates, reference.duplicates)
    assert panel.duplicates.attrs == reference.duplicates.attrs
    panel.close()
    reference.close()
