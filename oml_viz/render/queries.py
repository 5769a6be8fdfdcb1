"""The queries grid: each row a query, its top results and its nearest ground truths.

Row layout (colours as OML's)::

    [query, blue] | [result 1..n_instances, green = relevant / red = not] | [GT 1..n_gt, grey]

The query's title gives its id and n_gt (and the metric when the rows are the worst queries);
each result its rank, id and distance; each ground truth its id and distance, nearest first.
Unlike OML's figure, bboxes may be empty, images may have any size, a missing or broken file
becomes a placeholder tile naming the problem, and a row with fewer results or ground truths than
asked for leaves the slots empty instead of failing.

Example:
    >>> import tempfile, oml_viz as ov
    >>> root = tempfile.mkdtemp()
    >>> df = pd.DataFrame({"label": [0, 1, 0, 1], "is_query": True, "is_gallery": True,
    ...                    "path": ["a.png", "b.png", "c.png", "d.png"]})
    >>> for i, p in enumerate(df["path"]):
    ...     Image.new("RGB", (20, 16), (60 * i, 0, 0)).save(f"{root}/{p}")
    >>> emb = np.array([[0.0], [0.1], [1.0], [1.1]], np.float32)
    >>> res = ov.retrieve(emb, df["label"], df["is_query"], df["is_gallery"], top_n=3)
    >>> fig = plot_worst_queries(res, df, metric="map/2", n_queries=2, n_instances=2, n_gt=1, dataset_root=root)
    >>> disp = QueriesDisplay.from_results(res, df, [0, 3], n_instances=2, n_gt=1, dataset_root=root).plot()
    >>> [t.role for t in disp.tiles_ if t.row == 0]
    ['query', 'not_relevant', 'relevant', 'gt']
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image  # noqa: F401 (the module example uses it)

from oml_viz.checks import check_int
from oml_viz.compat.matplotlib import PixelImage as _PixelImage
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
from .text import draw_lines, get_font, wrap_line
from .tiles import framed_tile, inner_side, placeholder_tile

_FONT_PX = 11  # 2 lines fit the 30 px title band; more lines make the band taller
_LINE_STEP = 15  # DejaVu Sans 11 px: 13 px line + 2 px gap
_SHORT_LABEL = 12  # labels this long or shorter are in the captions by default
_MAX_ERROR_LINES = 6


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
    title: str  # the caption's lines joined by "\n", each drawn whole (never cut)
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


def _caption_labels(
    res: Any,
    images: Any,
    rows: Sequence[QueryRow],
    show_labels: bool | None,
    label_names: Mapping[Hashable, Any] | str | Sequence[Any] | None,
) -> dict[int, str] | None:
    """``{item id: caption text}`` for the items the rows show, or None when labels stay out."""
    if show_labels is False:
        return None
    ids = sorted({int(i) for row in rows for i in (row.query_id, *row.result_ids, *row.gt_ids)})
    n_items = len(res.labels)
    if label_names is None:
        texts = {i: f"label {res.labels[i]}" for i in ids}
        short = all(len(str(res.labels[i])) <= _SHORT_LABEL for i in ids)
    else:
        if isinstance(label_names, str):
            if not isinstance(images, pd.DataFrame) or label_names not in images.columns:
                have = list(images.columns) if isinstance(images, pd.DataFrame) else "no dataframe was given"
                raise ValueError(f"label_names: {label_names!r} is not a column of images ({have})")
            names = images[label_names].to_numpy(dtype=object)
            texts = {i: str(names[i]) for i in ids}
        elif isinstance(label_names, Mapping):
            texts = {i: str(label_names.get(res.labels[i], res.labels[i])) for i in ids}
        elif isinstance(label_names, Sequence) or isinstance(label_names, (np.ndarray, pd.Series)):
            names = np.asarray(label_names, dtype=object)
            if names.ndim != 1 or len(names) != n_items:
                raise ValueError(f"label_names: {len(names)} names for {n_items} items (one per item, "
                                 "a {label: name} mapping or a dataframe column name)")
            texts = {i: str(names[i]) for i in ids}
        else:
            raise TypeError("label_names must be a {label: name} mapping, a dataframe column name or one name "
                            f"per item, got {type(label_names).__name__}")
        short = all(len(t) <= _SHORT_LABEL for t in texts.values())
    return texts if show_labels or short else None


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
        labels: ``{item id: caption text}`` (e.g. ``"label 3"`` or a class name) added to the
            tiles' captions; None for none.

    Captions are wrapped, never cut: the band above the tiles grows by a line when needed.
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
        labels: Mapping[int, str] | None = None,
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
        self.labels = None if labels is None else {int(k): str(v) for k, v in labels.items()}

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
        show_labels: bool | None = None,
        label_names: Mapping[Hashable, Any] | str | Sequence[Any] | None = None,
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
            show_labels: add each item's label to its caption; None (default) = when every shown
                label is short (at most 12 characters).
            label_names: what a label is called: a ``{label: name}`` mapping (e.g. class names),
                the name of a dataframe column holding each item's name, or N names (one per item).
        """
        for name, v, low in (("n_instances", n_instances, 0), ("n_gt", n_gt, 0), ("n_queries", n_queries, 1)):
            check_int(name, v, low=low, hint=" (a figure needs a query)" if low else "")
        if show_labels is not None and not isinstance(show_labels, bool):
            raise TypeError(f"show_labels must be True, False or None, got {show_labels!r}")
        source = images if isinstance(images, ImageSource) else ImageSource(images, dataset_root, cache=cache)
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
            if query_ids.size == 0:
                raise ValueError("query_ids is empty: give at least one query's item id")
            if query_ids.dtype.kind not in "iu":
                raise TypeError(f"query_ids must be integer item ids, got dtype {query_ids.dtype}")
        rows = _rows_from_result(res, list(query_ids), int(n_instances), int(n_gt), metric)
        labels = _caption_labels(res, images, rows, show_labels, label_names)
        return cls(rows, source, n_instances=n_instances, n_gt=n_gt, bbox_mode=bbox_mode,
                   tile_size=tile_size, title=title, labels=labels)

    # ------------------------------------------------------------------ drawing
    def _layout(self, cells: list[tuple[int, int, int, str, str]] | None = None) -> GridLayout:
        cells = self._cells() if cells is None else cells
        n_lines = max([c[4].count("\n") + 1 for c in cells] or [2])
        return GridLayout(n_rows=max(1, len(self.rows)), n_instances=self.n_instances, n_gt=self.n_gt,
                          tile=self.tile_size, header_h=26 if self.title else 0,
                          title_h=max(30, n_lines * _LINE_STEP + 3))

    def _caption(self, facts: list[str | None]) -> str:
        """The facts packed into as few lines as fit above a tile (each fact kept whole)."""
        font, width = get_font(_FONT_PX), self.tile_size + GridLayout.pad - 2
        lines: list[str] = []
        for fact in facts:
            if fact is None:
                continue
            joined = f"{lines[-1]}  {fact}" if lines else fact
            if lines and font.getlength(joined) <= width:
                lines[-1] = joined
            else:
                lines.append(fact)
        return "\n".join(lines)

    def _cells(self) -> list[tuple[int, int, int, str, str]]:
        """(row, col, item_id, role, caption) of every tile to draw."""
        label = (lambda i: None) if self.labels is None else (lambda i: self.labels.get(int(i)))  # type: ignore[union-attr]
        cells = []
        for r, row in enumerate(self.rows):
            score = (f"{row.metric}={row.metric_value:.2f}"
                     if row.metric is not None and row.metric_value is not None else None)
            cells.append((r, 0, row.query_id, "query",
                          self._caption([f"query id {row.query_id}", label(row.query_id), f"n_gt={row.n_gt}", score])))
            for i, (gid, d, rel) in enumerate(zip(row.result_ids, row.result_distances, row.result_relevant)):
                cells.append((r, 1 + i, int(gid), "relevant" if rel else "not_relevant",
                              self._caption([f"#{i + 1}", f"id {int(gid)}", label(gid), _fmt_distance(float(d))])))
            for j, (gid, d) in enumerate(zip(row.gt_ids, row.gt_distances)):
                cells.append((r, 1 + self.n_instances + j, int(gid), "gt",
                              self._caption(["GT", f"id {int(gid)}", label(gid), _fmt_distance(float(d))])))
        return cells

    def render_mosaic(self) -> tuple[np.ndarray, GridLayout, list[Tile]]:
        """The whole grid, titles included, as one RGB uint8 image; its layout and its tiles."""
        rgba, layout, tiles = self._render_rgba()
        return np.ascontiguousarray(rgba[..., :3]), layout, tiles

    def _render_rgba(self) -> tuple[np.ndarray, GridLayout, list[Tile]]:
        # RGBA from the start: matplotlib draws RGBA uint8 without a per-pixel conversion
        cells = self._cells()
        layout = self._layout(cells)
        mosaic = np.full((layout.height, layout.width, 4), 255, dtype=np.uint8)
        colors = {"query": QUERY_COLOR, "relevant": RELEVANT_COLOR, "not_relevant": NOT_RELEVANT_COLOR,
                  "gt": GT_COLOR}
        side = inner_side(layout.tile, layout.frame)
        tiles = []
        for r, c, item, role, text in cells:
            th = self.source.thumbnail(item, side, self.bbox_mode)
            x0, y0, x1, y1 = layout.tile_box(r, c)
            if th.array is None:
                mosaic[y0:y1, x0:x1, :3] = placeholder_tile(layout.tile, layout.frame, colors[role])
            else:
                framed_tile(th.array, layout.tile, layout.frame, colors[role], th.bbox, out=mosaic[y0:y1, x0:x1, :3])
            tiles.append(Tile(r, c, item, role, text, th.error))
        self._warn_unrooted(tiles)
        self._draw_text(mosaic, layout, tiles)
        return mosaic, layout, tiles

    def _warn_unrooted(self, tiles: list[Tile]) -> None:
        """One warning per image source: files not found because relative paths had no root."""
        missing = sorted({t.item_id for t in tiles if t.error is not None and t.error.startswith("missing file")
                          and self.source.unrooted_folder(t.item_id) is not None})
        if missing and not getattr(self.source, "warned_unrooted", False):
            self.source.warned_unrooted = True
            warnings.warn(
                f"images: {len(missing)} of the {len({t.item_id for t in tiles})} images shown were not found: "
                f"their paths are relative and no dataset_root was given, so they were looked up in "
                f"{self.source.unrooted_folder(missing[0])} (e.g. item {missing[0]}: "
                f"{self.source.item(missing[0])}); pass dataset_root=<folder the paths are relative to>",
                UserWarning, stacklevel=4)

    def _draw_text(self, mosaic: np.ndarray, layout: GridLayout, tiles: list[Tile]) -> None:
        width = layout.tile + layout.pad
        for t in tiles:
            x0, y0, x1, y1 = layout.tile_box(t.row, t.col)
            draw_lines(mosaic, t.title.split("\n"), (x0 + x1) / 2, y0 - 3, _FONT_PX, max_width=width)
            if t.error is not None:
                inner = layout.tile - 2 * layout.frame - 4
                lines = [part for line in t.error.split("\n") for part in wrap_line(line, get_font(_FONT_PX - 1), inner)]
                if len(lines) > _MAX_ERROR_LINES:  # keep the head and the end (a path's file name)
                    lines = [*lines[:_MAX_ERROR_LINES - 2], lines[_MAX_ERROR_LINES - 2] + "…", lines[-1]]
                draw_lines(mosaic, lines, (x0 + x1) / 2, (y0 + y1) / 2, _FONT_PX - 1,
                           PLACEHOLDER_TEXT, max_width=inner, anchor_bottom=False)
        if self.title:
            draw_lines(mosaic, [self.title], layout.pad, self._title_y(layout), _FONT_PX + 2, bold=True,
                       align="left", anchor_bottom=False, max_width=layout.width - 2 * layout.pad)
        if not self.rows:
            draw_lines(mosaic, ["no queries to show"], layout.width / 2, layout.height / 2, _FONT_PX,
                       anchor_bottom=False)

    def _title_y(self, layout: GridLayout) -> float:
        """Vertical centre of the title line (subclasses with group headers put it above them)."""
        return layout.header_h / 2 + 2

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
    ``dataset_root``, ``tile_size``, ``title``, ``cache``, ``show_labels``, ``label_names``) or
    to ``plot`` (``ax``, ``dpi``). Each caption shows the item's label when labels are short
    (``show_labels=True/False`` to choose); ``label_names={0: "T-shirt", ...}`` names them.
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
        >>> import oml_viz as ov
        >>> res = ov.retrieve(np.array([[0.0], [0.1], [1.0], [1.1]], np.float32), [0, 1, 0, 1], top_n=2)
        >>> images = [np.full((16, 16, 3), 60 * i, np.uint8) for i in range(4)]
        >>> fig = plot_worst_queries(res, images, "cmc/1", n_queries=3, n_instances=2, n_gt=1)
        >>> ov.figure_to_array(fig).shape[2]
        3
    """
    ax, dpi = kwargs.pop("ax", None), kwargs.pop("dpi", 100)
    disp = QueriesDisplay.from_results(res, images, None, metric=metric, n_queries=n_queries, category=category,
                                       n_instances=n_instances, n_gt=n_gt, **kwargs)
    return disp.plot(ax, dpi=dpi).figure_
