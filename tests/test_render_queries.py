"""The queries grid, checked by its pixels: frames, item order, titles, bboxes, placeholders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

import oml_viz as ov
from oml_viz.data import ThumbnailCache
from oml_viz.render import (
    GT_COLOR,
    NOT_RELEVANT_COLOR,
    QUERY_COLOR,
    RELEVANT_COLOR,
    QueriesDisplay,
)
from oml_viz.render.colors import BBOX_COLOR, PLACEHOLDER_FILL

# 1-D positions: neighbour order and distances are easy to work out by hand and by numpy
POS = np.array([0.0, 1.0, 5.0, 2.0, 3.0, 9.0, 9.5, 20.0, 4.0])
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1])
CATS = np.array(["x", "x", "x", "y", "y", "z", "z", "z", "y"])
ROLE_COLOR = {"query": QUERY_COLOR, "relevant": RELEVANT_COLOR, "not_relevant": NOT_RELEVANT_COLOR, "gt": GT_COLOR}


def item_color(i: int) -> tuple[int, int, int]:
    return (20 + 25 * i, 230 - 20 * i, (70 * i) % 256)


def item_images():
    """Solid images of different sizes and aspect ratios: the centre pixel tells the item."""
    sizes = [(40, 40), (30, 90), (120, 50), (64, 64), (16, 20), (200, 200), (50, 51), (33, 77), (90, 30)]
    return [np.full(sizes[i] + (3,), item_color(i), np.uint8) for i in range(len(POS))]


@pytest.fixture(scope="module")
def res():
    emb = np.stack([POS, np.zeros_like(POS)], 1).astype(np.float32)
    return ov.retrieve(emb, LABELS, top_n=4, device="cpu")


def expected(qid: int):
    """(result ids, relevance, distances, gt ids, gt distances) by brute force."""
    d = np.abs(POS - POS[qid])
    others = [i for i in range(len(POS)) if i != qid]
    order = sorted(others, key=lambda i: (d[i], i))
    gt = [i for i in order if LABELS[i] == LABELS[qid]]
    return order, [LABELS[i] == LABELS[qid] for i in order], d, gt


def tile_pixels(arr, layout, row, col):
    x0, y0, x1, y1 = layout.tile_box(row, col)
    return arr[y0:y1, x0:x1]


def test_layout_and_frame_colours_by_pixel(res):
    disp = QueriesDisplay.from_results(res, item_images(), [0, 3], n_instances=4, n_gt=2).plot()
    arr = ov.figure_to_array(disp.figure_)
    lay = disp.layout_
    assert arr.shape == (lay.height, lay.width, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, disp.image_), "the figure shows the grid 1:1"
    assert lay.n_cols == 1 + 4 + 2
    for row, qid in enumerate([0, 3]):
        tiles = [t for t in disp.tiles_ if t.row == row]
        order, rel, _, gt = expected(qid)
        assert [t.col for t in tiles] == list(range(7))
        assert [t.item_id for t in tiles] == [qid] + order[:4] + gt[:2]
        roles = ["query"] + ["relevant" if r else "not_relevant" for r in rel[:4]] + ["gt", "gt"]
        assert [t.role for t in tiles] == roles
        for t in tiles:
            px = tile_pixels(arr, lay, row, t.col)
            frame = lay.frame
            assert tuple(px[0, 0]) == ROLE_COLOR[t.role]
            assert tuple(px[frame - 1, px.shape[1] // 2]) == ROLE_COLOR[t.role]  # top edge, full thickness
            assert tuple(px[px.shape[0] // 2, -1]) == ROLE_COLOR[t.role]
            assert tuple(px[px.shape[0] // 2, px.shape[1] // 2]) == item_color(t.item_id), "wrong image in tile"


def test_query_row_0_by_hand(res):
    """Item 0 at x=0: neighbours 1 (d=1, same label), 3 (2), 4 (3), 8 (4); GT 1 then 2 (d=5)."""
    disp = QueriesDisplay.from_results(res, item_images(), [0], n_instances=4, n_gt=2).plot()
    assert [t.item_id for t in disp.tiles_] == [0, 1, 3, 4, 8, 1, 2]
    assert [t.role for t in disp.tiles_][1:5] == ["relevant", "not_relevant", "not_relevant", "not_relevant"]


def test_titles_and_gt_order(res):
    disp = QueriesDisplay.from_results(res, item_images(), [5, 8], n_instances=3, n_gt=3).plot()
    by_row = {r: [t for t in disp.tiles_ if t.row == r] for r in (0, 1)}
    q5 = by_row[0][0].title
    assert q5.startswith("query id 5") and "n_gt=2" in q5
    results = by_row[0][1:4]
    assert [t.title.split()[0] for t in results] == ["#1", "#2", "#3"]
    assert results[0].title.endswith("d=0.500")  # item 6 at 9.5
    gts = [t for t in by_row[1] if t.role == "gt"]
    assert [t.item_id for t in gts] == [4, 3]  # item 8 at 4: GT 4 (d=1) then 3 (d=2)
    dists = [float(t.title.split("d=")[1]) for t in gts]
    assert dists == sorted(dists) == [1.0, 2.0]


def ink_runs(mask_1d):
    """[(start, end)] of the True runs of a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask_1d.astype(np.int8), 0]))
    return list(zip(edges[::2], edges[1::2]))


def test_title_text_is_drawn_above_each_tile(res):
    """Each tile's caption is drawn above it: as many text lines as the caption has, centred on
    the tile, each as wide as its own text at the grid's font (a different caption, other ink)."""
    from oml_viz.render.text import get_font

    disp = QueriesDisplay.from_results(res, item_images(), [0, 5], n_instances=2, n_gt=1).plot()
    lay, arr, font = disp.layout_, disp.image_, get_font(11)
    bands = {}
    for t in disp.tiles_:
        x0, y0, x1, _ = lay.tile_box(t.row, t.col)
        left = x0 - lay.pad // 2
        band = arr[y0 - lay.title_h:y0, left:x1 + lay.pad // 2].max(axis=2) < 128  # dark text pixels
        lines = t.title.split("\n")
        rows = ink_runs(band.any(axis=1))
        assert len(rows) == len(lines), f"{t.title!r}: {len(rows)} text lines drawn"
        for (ya, yb), line in zip(rows, lines):
            cols = np.flatnonzero(band[ya:yb].any(axis=0))
            width = cols[-1] - cols[0] + 1
            assert abs(width - font.getlength(line)) <= 3, (line, width)
            assert abs((left + (cols[0] + cols[-1]) / 2) - (x0 + x1) / 2) <= 2, f"{line!r} is not centred"
        bands[t.title] = band
    assert len(bands) == len(disp.tiles_), "every tile has its own caption"
    titles = list(bands)
    assert not np.array_equal(bands[titles[1]], bands[titles[2]])


def test_missing_gt_slots_stay_empty(res):
    disp = QueriesDisplay.from_results(res, item_images(), [0], n_instances=2, n_gt=3).plot()
    assert sum(t.role == "gt" for t in disp.tiles_) == 2  # item 0 has only 2 ground truths
    empty = tile_pixels(disp.image_, disp.layout_, 0, 1 + 2 + 2)
    assert (empty == 255).all()


def test_worst_queries_rows_and_metric_in_title(res):
    fig = ov.plot_worst_queries(res, item_images(), metric="map/3", n_queries=3, n_instances=3, n_gt=1)
    assert isinstance(fig, Figure)
    disp = QueriesDisplay.from_results(res, item_images(), metric="map/3", n_queries=3, n_instances=3, n_gt=1)
    worst = res.worst_queries("map/3", 3).tolist()
    assert [r.query_id for r in disp.rows] == worst
    values = res.per_query("map/3")[np.searchsorted(res.query_ids, worst)]
    assert list(values) == sorted(values)
    disp.plot()
    assert "map/3=" in disp.tiles_[0].title
    assert disp.title.startswith("worst 3 queries by map/3")


def test_category_from_dataframe_column(res, tmp_path):
    paths = []
    for i, img in enumerate(item_images()):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        paths.append(f"{i}.png")
    df = pd.DataFrame({"label": LABELS, "path": paths, "split": "validation", "is_query": True,
                       "is_gallery": True, "category": CATS})
    disp = QueriesDisplay.from_results(res, df, metric="cmc/1", n_queries=9, category="y", dataset_root=tmp_path,
                                       n_instances=2, n_gt=1)
    assert disp.rows and {CATS[r.query_id] for r in disp.rows} == {"y"}
    with pytest.raises(ValueError, match="category 'w'"):
        QueriesDisplay.from_results(res, df, metric="cmc/1", category="w", dataset_root=tmp_path)


def test_missing_and_corrupt_files_become_placeholders(res, tmp_path):
    paths = []
    for i, img in enumerate(item_images()):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "1.png").unlink()
    (tmp_path / "3.png").write_bytes(b"this is not a png")
    disp = QueriesDisplay.from_results(res, paths, [0], n_instances=2, n_gt=1, cache=ThumbnailCache()).plot()
    tiles = {t.item_id: t for t in disp.tiles_ if t.role != "gt"}
    assert "missing file" in tiles[1].error and "1.png" in tiles[1].error
    assert "unreadable image" in tiles[3].error and "3.png" in tiles[3].error
    assert tiles[0].error is None
    px = tile_pixels(disp.image_, disp.layout_, 0, 1)  # item 1, rank 1, relevant
    assert tuple(px[0, 0]) == RELEVANT_COLOR, "a placeholder keeps its role frame"
    assert (px == PLACEHOLDER_FILL).all(axis=2).sum() > 500
    assert (px.max(axis=2) < 200).sum() > 20  # the red problem text is drawn in the tile
    gt_px = tile_pixels(disp.image_, disp.layout_, 0, 3)
    assert tuple(gt_px[0, 0]) == GT_COLOR and (gt_px == PLACEHOLDER_FILL).all(axis=2).sum() > 500


def _bbox_dataset(tmp_path):
    """Items whose bbox holds a white square on a black image."""
    rows = []
    for i in range(len(POS)):
        img = np.zeros((100, 160, 3), np.uint8)
        img[30:70, 80:120] = 255
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "x_1": 80, "y_1": 30, "x_2": 120, "y_2": 70})
    df = pd.DataFrame(rows)
    df.loc[2, ["x_1", "y_1", "x_2", "y_2"]] = np.nan  # empty bbox: the whole image
    return df


def test_bbox_crop_is_default_and_draw_on_request(res, tmp_path):
    df = _bbox_dataset(tmp_path)
    crop = QueriesDisplay.from_results(res, df, [0], n_instances=1, n_gt=2, dataset_root=tmp_path).plot()
    inner = tile_pixels(crop.image_, crop.layout_, 0, 0)[10:-10, 10:-10]
    assert inner.min() == 255, "cropped to the white box, the tile interior is all white"
    assert [t.item_id for t in crop.tiles_] == [0, 1, 1, 2]
    whole = tile_pixels(crop.image_, crop.layout_, 0, 3)  # GT item 2 has no bbox: the whole, mostly black image
    assert (whole.max(axis=2) == 0).mean() > 0.3

    drawn = QueriesDisplay.from_results(res, df, [0], n_instances=1, n_gt=1, dataset_root=tmp_path,
                                        bbox_mode="draw").plot()
    px = tile_pixels(drawn.image_, drawn.layout_, 0, 0)
    is_box = (px == BBOX_COLOR).all(axis=2)
    _, xs = np.nonzero(is_box)
    assert is_box.sum() > 50
    # the box sits on the right half of the (wider than tall) image, where the white square is
    assert xs.min() > px.shape[1] // 2 - 5
    assert (px == 0).all(axis=2).sum() > 1000, "whole image shown, black background visible"


def test_plot_into_given_axes(res):
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 2, 2)
    disp = QueriesDisplay.from_results(res, item_images(), [0, 1], n_instances=2, n_gt=1).plot(ax=ax)
    assert disp.figure_ is fig and disp.ax_ is ax and len(ax.images) == 1
    arr = ov.figure_to_array(fig)
    assert arr.shape == (400, 600, 3)
    left, right = arr[:, :300], arr[:, 300:]
    assert (left == 255).all() and (right != 255).any()


def test_figure_to_array_keeps_a_foreign_canvas():
    from matplotlib.backend_bases import FigureCanvasBase

    fig = Figure(figsize=(2, 1), dpi=50)
    canvas = FigureCanvasBase(fig)
    fig.patch.set_facecolor((1.0, 0.0, 0.0))
    arr = ov.figure_to_array(fig)
    assert arr.shape == (50, 100, 3) and tuple(arr[10, 10]) == (255, 0, 0)
    assert fig.canvas is canvas
    with pytest.raises(TypeError, match="Figure"):
        ov.figure_to_array(np.zeros((3, 3)))


def test_bad_arguments(res):
    imgs = item_images()
    with pytest.raises(ValueError, match="top_n=5"):
        ov.plot_queries(res, imgs, [0], n_instances=5)
    with pytest.raises(ValueError, match="9"):
        ov.plot_queries(res, imgs[:5], [0])
    with pytest.raises(ValueError, match="n_gt"):
        ov.plot_queries(res, imgs, [0], n_instances=2, n_gt=-1)
    with pytest.raises(ValueError, match="bbox_mode"):
        ov.plot_queries(res, imgs, [0], n_instances=2, bbox_mode="zoom")
    only_some = ov.retrieve(np.stack([POS, POS], 1), LABELS, is_query=np.arange(9) < 3, top_n=2, device="cpu")
    with pytest.raises(ValueError, match="item 5 is not a query"):
        ov.plot_queries(only_some, imgs, [5], n_instances=2)


def test_grayscale_and_pil_images_render(res):
    imgs = [Image.fromarray(np.full((28, 28), 10 * i, np.uint8), "L") for i in range(len(POS))]
    disp = QueriesDisplay.from_results(res, imgs, [4], n_instances=2, n_gt=0, tile_size=64).plot()
    assert disp.layout_.n_cols == 3 and disp.image_.shape[1] == disp.layout_.width
    c = tile_pixels(disp.image_, disp.layout_, 0, 0)[32, 32]
    assert tuple(c) == (40, 40, 40)


def test_no_pyplot_figure_registered(res):
    import sys

    ov.plot_queries(res, item_images(), [0], n_instances=1, n_gt=0)
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


@pytest.mark.parametrize("dpi", [50, 200])
def test_savefig_at_another_dpi_scales_the_whole_grid(res, dpi):
    import io

    disp = QueriesDisplay.from_results(res, item_images(), [0, 3], n_instances=4, n_gt=2).plot()
    buf = io.BytesIO()
    disp.figure_.savefig(buf, format="png", dpi=dpi)
    out = np.asarray(Image.open(buf).convert("RGB"))
    lay = disp.layout_
    assert out.shape[:2] == (round(lay.height * dpi / 100), round(lay.width * dpi / 100))
    ref = np.asarray(Image.fromarray(disp.image_).resize((out.shape[1], out.shape[0])))
    assert np.abs(out.astype(int) - ref).mean() < 3


def test_rows_with_padded_results_leave_slots_empty():
    """Sequence exclusions leave item 0 two candidates of three: the third slot stays blank."""
    emb = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    res = ov.retrieve(emb, [0, 0, 1, 1], top_n=3, sequence_ids=[7, 8, 7, 9], device="cpu")
    assert res.retrieved_ids[0, 2] == -1
    imgs = [np.full((10, 10, 3), item_color(i), np.uint8) for i in range(4)]
    disp = QueriesDisplay.from_results(res, imgs, [0], n_instances=3, n_gt=1).plot()
    assert [(t.col, t.item_id) for t in disp.tiles_] == [(0, 0), (1, 1), (2, 3), (4, 1)]
    assert (tile_pixels(disp.image_, disp.layout_, 0, 3) == 255).all()


def test_top_level_names():
    assert ov.plot_worst_queries is ov.render.plot_worst_queries
    assert ov.QueriesDisplay is QueriesDisplay
    assert ov.datasets.make_demo_dataset is ov.data.make_demo_dataset
