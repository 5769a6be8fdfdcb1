"""Tile captions of the queries grid: whole (never cut), with labels, and missing files explained."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import oml_viz as ov
from oml_viz.data.sources import ImageSource
from oml_viz.render import QueriesDisplay
from oml_viz.render.layout import GridLayout
from oml_viz.render.text import get_font

N = 40
NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"]


@pytest.fixture(scope="module")
def res():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(N, 6)).astype(np.float32)
    labels = np.arange(N) % 5
    return ov.retrieve(emb, labels, top_n=10, device="cpu")


def images():
    return [np.full((24, 30, 3), 7 * i % 256, np.uint8) for i in range(N)]


def caption_lines(disp):
    return [(t, line) for t in disp.tiles_ for line in t.title.split("\n")]


@pytest.mark.parametrize("tile_size", [96, 112, 128])
@pytest.mark.parametrize("metric", ["map/5", "precision/10", "cmc/10"])
def test_every_caption_line_fits_its_tile(res, tile_size, metric):
    """The panel grid (112 px tiles) cut 'n_gt=8  precision/10=0.00' to '...'; now every line fits."""
    worst = res.worst_queries(metric, 3)
    disp = QueriesDisplay.from_results(res, images(), list(worst), metric=metric, n_instances=10, n_gt=2,
                                       tile_size=tile_size).plot()
    font, width = get_font(11), tile_size + GridLayout.pad
    for t, line in caption_lines(disp):
        assert font.getlength(line) <= width, f"caption line {line!r} of item {t.item_id} is cut"
    query = disp.tiles_[0].title
    assert f"{metric}=" in query and "n_gt=" in query and "…" not in query
    # the band above the tiles holds every line: no caption runs into the row above
    n_lines = max(t.title.count("\n") + 1 for t in disp.tiles_)
    assert disp.layout_.title_h >= n_lines * 13


def test_labels_in_every_caption_by_default_when_short(res):
    disp = QueriesDisplay.from_results(res, images(), [0, 7], n_instances=4, n_gt=2).plot()
    for t in disp.tiles_:
        assert f"label {res.labels[t.item_id]}" in t.title, t.title
    off = QueriesDisplay.from_results(res, images(), [0, 7], n_instances=4, n_gt=2, show_labels=False).plot()
    assert not any("label" in t.title for t in off.tiles_)


def test_long_labels_stay_out_unless_asked(res):
    long = {i: f"a rather long class description {i}" for i in range(5)}
    disp = QueriesDisplay.from_results(res, images(), [0], n_instances=3, n_gt=1, label_names=long).plot()
    assert not any("description" in t.title for t in disp.tiles_)
    forced = QueriesDisplay.from_results(res, images(), [0], n_instances=3, n_gt=1, label_names=long,
                                         show_labels=True).plot()
    assert all(long[res.labels[t.item_id]] in t.title for t in forced.tiles_)


def test_label_names_mapping_column_and_sequence(res):
    ids = [0, 11]
    by_map = QueriesDisplay.from_results(res, images(), ids, n_instances=3, n_gt=1,
                                         label_names=dict(enumerate(NAMES))).plot()
    for t in by_map.tiles_:
        assert NAMES[res.labels[t.item_id]] in t.title and "label" not in t.title
    df = pd.DataFrame({"path": [f"{i}.png" for i in range(N)], "label": res.labels,
                       "cls": [f"c{i}" for i in range(N)]})
    seq = [f"c{i}" for i in range(N)]
    for names in ("cls", seq):
        images_arg = df if isinstance(names, str) else images()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the files do not exist: placeholders
            disp = QueriesDisplay.from_results(res, images_arg, ids, n_instances=3, n_gt=1,
                                               label_names=names, dataset_root="/nonexistent").plot()
        for t in disp.tiles_:
            assert f"c{t.item_id}" in t.title.split()


@pytest.mark.parametrize("names, err", [
    ("cls", ValueError),            # a column name without a dataframe
    (["a", "b"], ValueError),       # not one per item
    (3.5, TypeError),
])
def test_bad_label_names(res, names, err):
    with pytest.raises(err, match="label_names"):
        QueriesDisplay.from_results(res, images(), [0], n_instances=2, n_gt=0, label_names=names)


def test_bad_show_labels(res):
    with pytest.raises(TypeError, match="show_labels"):
        QueriesDisplay.from_results(res, images(), [0], n_instances=2, n_gt=0, show_labels="yes")


def test_plot_worst_queries_signature_is_backward_compatible(res):
    params = list(inspect.signature(ov.plot_worst_queries).parameters)
    assert params[:7] == ["res", "images", "metric", "n_queries", "n_instances", "n_gt", "category"]
    fig = ov.plot_worst_queries(res, images(), "map/5", 2, 3, 1, None, label_names=dict(enumerate(NAMES)))
    arr = ov.figure_to_array(fig)
    plain = ov.figure_to_array(ov.plot_worst_queries(res, images(), "map/5", 2, 3, 1, None, show_labels=False))
    assert arr.shape[1] == plain.shape[1] and not np.array_equal(arr[: plain.shape[0]], plain)


def test_relative_paths_without_root_warn_once_and_name_the_resolved_path(res, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for i in range(N):
        if i % 2 == 0:  # the odd ones are missing
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    df = pd.DataFrame({"path": [f"sub/{i}.png" for i in range(N)], "label": res.labels})  # wrong: no root
    source = ImageSource(df)
    with pytest.warns(UserWarning, match=r"were not found.*relative.*no dataset_root") as rec:
        disp = QueriesDisplay.from_results(res, source, [0, 1], n_instances=3, n_gt=1).plot()
    (w,) = [r for r in rec if "dataset_root" in str(r.message)]
    shown = {t.item_id for t in disp.tiles_}
    assert f"{len(shown)} of the {len(shown)} images shown" in str(w.message)
    assert str(tmp_path) in str(w.message)
    for t in disp.tiles_:
        assert t.error is not None and str(tmp_path / "sub" / f"{t.item_id}.png") in t.error.replace("\n", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per image source: the next page is quiet
        QueriesDisplay.from_results(res, source, [2, 3], n_instances=3, n_gt=1).plot()
    # with the right root nothing warns and the odd items' tiles name their full path
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        df2 = df.assign(path=[f"imgs/{i}.png" for i in range(N)])
        disp = QueriesDisplay.from_results(res, df2, [0, 1], n_instances=3, n_gt=1, dataset_root=tmp_path).plot()
    assert not [r for r in rec if "dataset_root" in str(r.message)]
    for t in disp.tiles_:
        assert (t.error is None) == (t.item_id % 2 == 0)
