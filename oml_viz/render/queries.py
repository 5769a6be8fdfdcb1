"""The queries grid: each row a query, its top results and its nearest ground truths.

Row layout (colours as OML's)::

    [query, blue] | [result 1..n_instances, green = relevant / red = not] | [GT 1..n_gt, grey]

The query's title gives its id and n_gt (and the metric when the rows are the worst queries);
each result its rank, id and distance; each ground truth its id and distance, nearest first.
Unlike OML's figure, bboxes may be empty, images may have any size, a missing or broken file
becomes a placeholder tile naming the problem, and a row with fewer results or ground truths than
asked for leaves the slots empty instead of failing.

Example:
    >>> res = ov.retrieve(emb, df["label"], df["is_query"], df["is_gallery"])   # doctest: +SKIP
    >>> fig = plot_worst_queries(res, df, metric="map/5", n_queries=5)          # doctest: +SKIP
    >>> disp = QueriesDisplay.from_results(res, df, [3, 17]).plot()              # doctest: +SKIP
    >>> disp.figure_                                                             # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import FigureImage
from PIL import Image

from oml_viz.data.cache import ThumbnailCache
from oml_viz.data.sources import BBOX_MODES, BBoxMode, ImageSource

from .colors import (
    GT_COLOR,
    NOT_RELEVANT_COLOR,
    PLACEHOLDER_TEXT,
    QUERY_COLOR,
    RELEVANT_COLOR,
)
from .layout import GridLayout
from .text import draw_lines
from .tiles import framed_tile, inner_side, placeholder_tile

_FONT_PX = 11  # 2 lines fit the 30 px title band


@dataclass(frozen=True)
class QueryRow:
    """What one row shows; plain data computed once from a RetrievalResult."""

    query_id: int
    n_gt: int
    result_ids: np.ndarray  # (<= n_instances,) int64, no padding
    result_distances: np.ndarray
    result_relevant: np.ndarray  # bool
    gt_ids: np.ndarray  # (<= n_gt,) nearest first
    gt_distances: np.ndarray
    metric: str | None = None
    metric_value: float | None = None


@dataclass(frozen=True)
class Tile:
    """One drawn tile: where, which item, in which role, and what went wrong (if anything)."""

    row: int
    col: int
    item_id: int
    role: str  # "query" | "relevant" | "not_relevant" | "gt"
    title: str
    error: str | None = None


def _fmt_distance(d: float) -> str:
    if not np.isfinite(d):
        return "d=inf"
    return f"d={d:.3f}" if abs(d) < 100 else f"d={d:.4g}"


def _rows_from_result(
    res: Any, query_ids: Sequence[int], n_instances: int, n_gt: int, metric: str | None
) -> list[QueryRow]:
    k = res.retrieved_ids.shape[1]
    if n_instances > k:
        raise ValueError(f"n_instances={n_instances} is above the {k} results per query the result holds: "
                         f"call retrieve(..., top_n={n_instances})")
    values = res.per_query(metric) if metric is not None else None
    rows = []
    for qid in query_ids:
        qid = int(qid)
        r = int(np.searchsorted(res.query_ids, qid))
        if r >= len(res.query_ids) or res.query_ids[r] != qid:
            raise ValueError(f"query_ids: item {qid} is not a query of this result")
        ids = res.retrieved_ids[r, :n_instances]
        keep = ids >= 0  # -1 pads rows with fewer candidates
        gt_ids, gt_dist = (np.empty(0, np.int64), np.empty(0, np.float32))
        if n_gt > 0 and res.n_gt[r] > 0:
            gt_ids, gt_dist = res.gt_ids(qid, return_distances=True)
            gt_ids, gt_dist = gt_ids[:n_gt], gt_dist[:n_gt]
        rows.append(QueryRow(
            query_id=qid, n_gt=int(res.n_gt[r]),
            result_ids=ids[keep].astype(np.int64), result_distances=res.distances[r, :n_instances][keep],
            result_relevant=res.is_relevant[r, :n_instances][keep].astype(bool),
            gt_ids=np.asarray(gt_ids, np.int64), gt_distances=np.asarray(gt_dist, np.float32),
            metric=metric, metric_value=None if values is None else float(values[r]),
        ))
    return rows


class QueriesDisplay:
    """A grid of queries with their results and ground truths (scikit-learn Display style).

    Build it with :meth:`from_results` (which does the retrieval bookkeeping once), then call
    :meth:`plot` (as often as wanted, e.g. into different axes). After ``plot``: ``figure_``,
    ``ax_``, ``tiles_`` (one :class:`Tile` per drawn tile) and ``layout_`` (:class:`GridLayout`).

    Args:
        rows: one :class:`QueryRow` per query.
        source: an :class:`oml_viz.data.ImageSource` over the result's N items.
        n_instances, n_gt: slots per row for results and ground truths.
        bbox_mode: ``"crop"`` (default) crops each image to its bbox, ``"draw"`` shows the whole
            image with the box drawn, ``"ignore"`` shows the whole image.
        tile_size: tile side in pixels (at ``dpi``).
        title: a header line above the grid (None for none).
    """

    def __init__(
        self,
        rows: Sequence[QueryRow],
        source: ImageSource,
        *,
        n_instances: int = 5,
        n_gt: int = 2,
        bbox_mode: BBoxMode = "crop",
        tile_size: int = 128,
        title: str | None = None,
    ):
        if bbox_mode not in BBOX_MODES:
            raise ValueError(f"bbox_mode must be one of {BBOX_MODES}, got {bbox_mode!r}")
        if tile_size < 32:
            raise ValueError(f"tile_size must be >= 32 pixels, got {tile_size}")
        self.rows = list(rows)
        self.source = source
        self.n_instances = int(n_instances)
        self.n_gt = int(n_gt)
        self.bbox_mode = bbox_mode
        self.tile_size = int(tile_size)
        self.title = title

    @classmethod
    def from_results(
        cls,
        res: Any,
        images: Sequence[Any] | pd.DataFrame,
        query_ids: Sequence[int] | None = None,
        *,
        metric: str | None = None,
        n_queries: int = 5,
        category: Hashable | None = None,
        categories: Sequence[Hashable] | None = None,
        n_instances: int = 5,
        n_gt: int = 2,
        dataset_root: str | os.PathLike | None = None,
        bbox_mode: BBoxMode = "crop",
        tile_size: int = 128,
        cache: ThumbnailCache | None = None,
        title: str | None = None,
    ) -> QueriesDisplay:
        """Collect the rows to show from a :class:`oml_viz.RetrievalResult`.

        Args:
            res: the retrieval result.
            images: the N items' images: paths / PIL images / arrays, or an OML dataframe
                (``path`` relative to ``dataset_root``, bbox columns used).
            query_ids: the queries to show (item ids). When None, the ``n_queries`` worst queries by
                ``metric`` (default ``"map/5"``), optionally of one ``category`` only.
            categories: one category per item for ``category``; defaults to the result's own,
                else the dataframe's ``category`` column.
            n_instances: results per row (at most the result's top_n).
            n_gt: ground truths per row, nearest first (0 for none).
        """
        for name, v in (("n_instances", n_instances), ("n_gt", n_gt), ("n_queries", n_queries)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        source = ImageSource(images, dataset_root, cache=cache)
        n_items = len(res.labels)
        if len(source) != n_items:
            raise ValueError(f"images holds {len(source)} items but the result was computed on {n_items}")
        if query_ids is None:
            metric = metric or "map/5"
            use_df = (category is not None and categories is None and getattr(res, "categories", None) is None
                      and isinstance(images, pd.DataFrame) and "category" in images.columns)
            if use_df:
                categories = images["category"].to_numpy()
            query_ids = res.worst_queries(metric, n_queries, category, categories=categories)
            if title is None:
                title = f"worst {len(query_ids)} queries by {metric}" + (f", category {category!r}" if category is not None else "")
        else:
            query_ids = np.atleast_1d(np.asarray(query_ids))
            if query_ids.dtype.kind not in "iu":
                raise ValueError(f"query_ids must be integer item ids, got dtype {query_ids.dtype}")
        rows = _rows_from_result(res, list(query_ids), int(n_instances), int(n_gt), metric)
        return cls(rows, source, n_instances=n_instances, n_gt=n_gt, bbox_mode=bbox_mode,
                   tile_size=tile_size, title=title)

    # ------------------------------------------------------------------ drawing
    def _layout(self) -> GridLayout:
        return GridLayout(n_rows=max(1, len(self.rows)), n_instances=self.n_instances, n_gt=self.n_gt,
                          tile=self.tile_size, header_h=26 if self.title else 0)

    def _cells(self) -> list[tuple[int, int, int, str, str]]:
        """(row, col, item_id, role, title) of every tile to draw."""
        cells = []
        for r, row in enumerate(self.rows):
            head = f"query id {row.query_id}\nn_gt={row.n_gt}"
            if row.metric is not None and row.metric_value is not None:
                head += f"  {row.metric}={row.metric_value:.2f}"
            cells.append((r, 0, row.query_id, "query", head))
            for i, (gid, d, rel) in enumerate(zip(row.result_ids, row.result_distances, row.result_relevant)):
                cells.append((r, 1 + i, int(gid), "relevant" if rel else "not_relevant",
                              f"#{i + 1}  id {int(gid)}\n{_fmt_distance(float(d))}"))
            for j, (gid, d) in enumerate(zip(row.gt_ids, row.gt_distances)):
                cells.append((r, 1 + self.n_instances + j, int(gid), "gt",
                              f"GT  id {int(gid)}\n{_fmt_distance(float(d))}"))
        return cells

    def render_mosaic(self) -> tuple[np.ndarray, GridLayout, list[Tile]]:
        """The whole grid, titles included, as one RGB uint8 image; its layout and its tiles."""
        rgba, layout, tiles = self._render_rgba()
        return np.ascontiguousarray(rgba[..., :3]), layout, tiles

    def _render_rgba(self) -> tuple[np.ndarray, GridLayout, list[Tile]]:
        # RGBA from the start: matplotlib draws RGBA uint8 without a per-pixel conversion
        layout = self._layout()
        mosaic = np.full((layout.height, layout.width, 4), 255, dtype=np.uint8)
        colors = {"query": QUERY_COLOR, "relevant": RELEVANT_COLOR, "not_relevant": NOT_RELEVANT_COLOR,
                  "gt": GT_COLOR}
        side = inner_side(layout.tile, layout.frame)
        tiles = []
        for r, c, item, role, text in self._cells():
            th = self.source.thumbnail(item, side, self.bbox_mode)
            x0, y0, x1, y1 = layout.tile_box(r, c)
            if th.array is None:
                mosaic[y0:y1, x0:x1, :3] = placeholder_tile(layout.tile, layout.frame, colors[role])
            else:
                framed_tile(th.array, layout.tile, layout.frame, colors[role], th.bbox, out=mosaic[y0:y1, x0:x1, :3])
            tiles.append(Tile(r, c, item, role, text, th.error))
        self._draw_text(mosaic, layout, tiles)
        return mosaic, layout, tiles

    def _draw_text(self, mosaic: np.ndarray, layout: GridLayout, tiles: list[Tile]) -> None:
        width = layout.tile + layout.pad
        for t in tiles:
            x0, y0, x1, y1 = layout.tile_box(t.row, t.col)
            draw_lines(mosaic, t.title.split("\n"), (x0 + x1) / 2, y0 - 3, _FONT_PX, max_width=width)
            if t.error is not None:
                draw_lines(mosaic, t.error.split("\n"), (x0 + x1) / 2, (y0 + y1) / 2, _FONT_PX - 1,
                           PLACEHOLDER_TEXT, max_width=layout.tile - 2 * layout.frame - 4, anchor_bottom=False)
        if self.title:
            draw_lines(mosaic, [self.title], layout.pad, layout.header_h / 2 + 2, _FONT_PX + 2, bold=True,
                       align="left", anchor_bottom=False, max_width=layout.width - 2 * layout.pad)
        if not self.rows:
            draw_lines(mosaic, ["no queries to show"], layout.width / 2, layout.height / 2, _FONT_PX,
                       anchor_bottom=False)

    def plot(self, ax: Axes | None = None, *, dpi: int = 100) -> QueriesDisplay:
        """Draw the grid into ``ax``, or into a new figure at one pixel per grid pixel when None.

        Returns self; after it ``figure_``, ``ax_`` (None for a new figure: the grid is a
        ``figimage``), ``image_`` (the grid as RGB uint8), ``tiles_`` and ``layout_``.
        """
        rgba, layout, tiles = self._render_rgba()
        rgba.flags.writeable = False  # shared by the figure and image_
        if ax is None:
            # one figure image, pixels 1:1 with no resampling; an axes' imshow costs ~0.5 s more here
            fig = Figure(figsize=(layout.width / dpi, layout.height / dpi), dpi=dpi)
            FigureCanvasAgg(fig)  # no pyplot: the figure is not registered anywhere global
            fig.images.append(_PixelImage(fig, rgba))
            fig.stale = True
        else:
            fig = ax.figure
            ax.imshow(rgba, interpolation="antialiased", extent=(0, layout.width, layout.height, 0))
            ax.set_xlim(0, layout.width)
            ax.set_ylim(layout.height, 0)
            ax.set_axis_off()
        self.figure_, self.ax_, self.image_, self.tiles_, self.layout_ = fig, ax, rgba[..., :3], tiles, layout
        return self


class _PixelImage(FigureImage):
    """A figure image drawn pixel for pixel at the figure's own dpi, skipping the resampling.

    matplotlib resamples even at scale 1 (about 0.2 s for a 10 x 8 grid on 2 cores); at any other
    output size (savefig(dpi=...), PDF, SVG) the grid is scaled to fill the figure.
    """

    def __init__(self, fig: Figure, rgba: np.ndarray):
        super().__init__(fig, origin="upper")
        self.set_data(rgba)
        self._bottom_up = np.ascontiguousarray(rgba[::-1])  # the renderer's row order

    def make_image(self, renderer, magnification=1.0, unsampled=False):
        fig = self.get_figure(root=True)
        w, h = fig.get_size_inches() * renderer.dpi * magnification
        size = (max(1, round(w)), max(1, round(h)))
        if size == (self._bottom_up.shape[1], self._bottom_up.shape[0]):
            return self._bottom_up, 0, 0, None
        # savefig(dpi=...) or a vector backend: scale the whole grid to the output's pixels
        # (matplotlib's own figimage keeps pixel size and crops instead)
        resized = Image.fromarray(self._bottom_up, "RGBA").resize(size, Image.Resampling.LANCZOS)
        return np.array(resized), 0, 0, None


def plot_queries(
    res: Any,
    images: Sequence[Any] | pd.DataFrame,
    query_ids: Sequence[int],
    n_instances: int = 5,
    n_gt: int = 2,
    **kwargs: Any,
) -> Figure:
    """A figure of the given queries (item ids), one row each: query | results | ground truths.

    Extra keyword arguments go to :meth:`QueriesDisplay.from_results` (``bbox_mode``,
    ``dataset_root``, ``tile_size``, ``title``, ``cache``) or to ``plot`` (``ax``, ``dpi``).
    """
    ax, dpi = kwargs.pop("ax", None), kwargs.pop("dpi", 100)
    disp = QueriesDisplay.from_results(res, images, query_ids, n_instances=n_instances, n_gt=n_gt, **kwargs)
    return disp.plot(ax, dpi=dpi).figure_


def plot_worst_queries(
    res: Any,
    images: Sequence[Any] | pd.DataFrame,
    metric: str = "map/5",
    n_queries: int = 5,
    n_instances: int = 5,
    n_gt: int = 2,
    category: Hashable | None = None,
    **kwargs: Any,
) -> Figure:
    """A figure of the ``n_queries`` queries with the lowest ``metric``, worst first.

    ``category`` keeps the queries of one category (categories from the result, ``categories=``,
    or the dataframe's ``category`` column). Other keyword arguments as in :func:`plot_queries`.

    Example:
        >>> fig = plot_worst_queries(res, df, "cmc/1", n_queries=3)    # doctest: +SKIP
        >>> rgb = figure_to_array(fig)                                 # doctest: +SKIP
    """
    ax, dpi = kwargs.pop("ax", None), kwargs.pop("dpi", 100)
    disp = QueriesDisplay.from_results(res, images, None, metric=metric, n_queries=n_queries, category=category,
                                       n_instances=n_instances, n_gt=n_gt, **kwargs)
    return disp.plot(ax, dpi=dpi).figure_
