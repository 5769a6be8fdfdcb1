"""ComparePanel, ConfusionPanel and the Dashboard's Compare / Confusions tabs (no browser):
programmatic clicks give the expected state, table and images; close releases everything."""
from __future__ import annotations

import base64
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

import oml_viz as ov
from oml_viz.datasets import make_demo_dataset
from oml_viz.render import ComparedQueriesDisplay, QueriesDisplay
from oml_viz.widgets import ComparePanel, ConfusionPanel, Dashboard
from oml_viz.widgets.png import png_to_rgb


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    df = make_demo_dataset(root, n_classes=8, images_per_class=5, size=32, progress=False)
    rng = np.random.default_rng(0)
    labels = df["label"].to_numpy()
    onehot = np.eye(8, dtype=np.float32)[labels]
    new = ov.retrieve(onehot + rng.normal(0, 0.45, (len(df), 8)).astype(np.float32), labels, top_n=6)
    old = ov.retrieve(onehot + rng.normal(0, 0.9, (len(df), 8)).astype(np.float32), labels, top_n=6)
    return df, old, new


def descendants(widget):
    out = [widget]
    for child in getattr(widget, "children", ()) or ():
        out += descendants(child)
    return out


def test_compare_panel_table_pages_and_grid(data):
    df, old, new = data
    cmp = ov.compare(old, new, names=("old", "new"))
    panel = ComparePanel(cmp, df, n_queries=3, n_instances=4, n_boot=200, background=False)
    cats = df["category"].to_numpy(dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = cmp.table(metrics=("cmc/1", "precision/5", "map/5"), categories=cats, n_boot=200, seed=0)
    assert panel.table.equals(expected)
    assert panel.metric.value == "map/5" and panel.kind.value == "regressed"
    # the table: one row per group, intervals shaded when they exclude 0
    html_text = panel.table_html.value
    for group in expected.index:
        assert f">{group}</th>" in html_text
    n_shaded = int(((expected["map/5/ci_low"] > 0) | (expected["map/5/ci_high"] < 0)).sum())
    assert html_text.count("#c8efc8") + html_text.count("#f6c6c6") == 2 * n_shaded
    # pages follow cmp.changed, largest change first
    order = cmp.changed("map/5", "regressed", None)
    assert panel.page_query_ids == order[:3].tolist()
    grid = png_to_rgb(panel.grid.png)
    ref = ComparedQueriesDisplay.from_comparison(cmp, df, order[:3].tolist(), metric="map/5", n_instances=4,
                                                 tile_size=96, title="x").render_mosaic()[0]
    assert grid.shape == ref.shape
    if len(order) > 3:
        panel.next_page()
        assert panel.page_query_ids == order[3:6].tolist()
    panel.kind.value = "improved"
    assert panel.page == 0 and panel.page_query_ids == cmp.changed("map/5", "improved", 3).tolist()
    category = sorted(set(df["category"]))[1]
    panel.category.value = category
    assert panel.page_query_ids == cmp.changed("map/5", "improved", 3, category, categories=cats).tolist()
    assert "outline" in panel.table_html.value  # the chosen category's row is marked
    panel.metric.value = "cmc/1"
    assert panel.state == {"metric": "cmc/1", "kind": "improved", "category": category, "page": 0}
    png = panel.view_png()
    assert png[:4] == b"\x89PNG"
    widgets = descendants(panel)
    panel.close()
    assert all(wd.comm is None for wd in widgets) and len(panel.cache) == 0


def test_compare_panel_bad_arguments(data):
    df, old, new = data
    cmp = ov.compare(old, new)
    with pytest.raises(ValueError, match="metric: 'map/3' is not one of"):
        ComparePanel(cmp, df, metric="map/3", background=False)
    with pytest.raises(ValueError, match="n_queries must be a positive int, got 0"):
        ComparePanel(cmp, df, n_queries=0, background=False)
    with pytest.raises(ValueError, match="n_boot must be an int >= 100"):
        ComparePanel(cmp, df, n_boot=10, background=False)


def test_confusion_panel_pairs_heat_map_and_queries(data):
    df, old, new = data
    panel = ConfusionPanel(old, df, k=5, top=6, n_queries=2, background=False)
    conf = old.confusions(k=5)
    assert len(panel.pairs.options) == min(6, len(conf))
    assert panel.heat.png[:4] == b"\x89PNG" and panel.grid.png == b""
    a, b = conf.iloc[0]["query_label"], conf.iloc[0]["retrieved_label"]
    panel.select(a, b)
    assert panel.selected == (a, b)
    expected = old.confused_queries(a, b, k=5)
    assert panel.page_query_ids == expected[:2].tolist()
    ref = QueriesDisplay.from_results(old, df, expected[:2].tolist(), metric="map/5", n_instances=5, n_gt=2,
                                      tile_size=96, title="x").render_mosaic()[0]
    assert png_to_rgb(panel.grid.png).shape == ref.shape
    if len(expected) > 2:
        panel.go_to_page(1)
        assert panel.page_query_ids == expected[2:4].tolist()
    # choosing a pair in the list is the same as select()
    panel.pairs.value = 1
    second = (conf.iloc[1]["query_label"], conf.iloc[1]["retrieved_label"])
    assert panel.selected == second and panel.page == 0
    panel.k.value = 3
    assert panel.selected is None and len(panel.pairs.options) == min(6, len(old.confusions(k=3)))
    with pytest.raises(ValueError, match="not among the 6 most confused pairs"):
        panel.select("no-such-label", b)
    with pytest.raises(ValueError, match="k must be an int in 1..6"):
        ConfusionPanel(old, df, k=7, background=False)
    widgets = descendants(panel)
    panel.close()
    assert all(wd.comm is None for wd in widgets)


def test_dashboard_compare_and_confusions_tabs_in_report(data, tmp_path):
    df, old, new = data
    dash = Dashboard(new, df, baseline=old, names=("old", "new"), background=False)
    assert {"Compare", "Confusions"} <= set(dash.panels)
    assert dash.panels["Compare"] is dash.compare and dash.panels["Confusions"] is dash.confusions
    assert dash.compare.cmp.a is old and dash.compare.cmp.b is new
    dash.confusions.select(*dash.confusions.table.iloc[0][["query_label", "retrieved_label"]])
    dash.wait()
    text = dash.save_html(tmp_path / "report.html").read_text()

    def section_pngs(heading):
        part = text.split(f"<section><h2>{heading}</h2>")[1].split("</section>")[0]
        return [base64.b64decode(p) for p in re.findall(r'src="data:image/png;base64,([^"]+)"', part)]

    assert section_pngs("Confusions") == [dash.confusions.view_png()]  # heat map + the pair's queries
    assert section_pngs("Compare") == [dash.compare.view_png()]
    assert "ov-compare-table" in text.split("<h2>Compare</h2>")[1]
    dash.close()
    plain = Dashboard(new, df, background=False)
    assert "Compare" not in plain.panels and "Confusions" in plain.panels
    plain.close()
