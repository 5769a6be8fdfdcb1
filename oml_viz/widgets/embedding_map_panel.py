"""``EmbeddingMapPanel``: every item on a 2-D map (jupyter-scatter, WebGL); a selection shows its images.

The map is a ``jscatter.Scatter`` (WebGL: fluid with a million points, lasso, pan and zoom). Lasso
or click selects items; the first ``grid_size`` of them show as an image grid below the map
(rendered on the panel worker, cached by selection). Hovering a point shows its id and label.
Colours: ``"label"``, ``"category"``, a per-query metric (``"map/5"``, ...; items that are no
query are grey) or ``"label_issue"`` (the :func:`oml_viz.find_label_issues` score). The colour
selector updates the scatter in place. The static export (``view_png``, ``save_html``) draws the
map with matplotlib, the selection outlined, above the grid.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                  # 4 labels x 3 items
    >>> emb = (rng.normal(size=(12, 8)) * 0.1 + labels[:, None]).astype(np.float32)
    >>> emb[11] = emb[0]                        # item 11 (label 3) is a copy of item 0 (label 0)
    >>> images = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(12)]
    >>> res = ov.retrieve(emb, labels, top_n=5)
    >>> panel = EmbeddingMapPanel(res, images, color_by="label_issue", background=False)
    >>> panel.select([3, 7, 11]); _ = panel.wait()
    >>> panel.selected, bytes(panel.view_png()[:4])
    ([3, 7, 11], b'\\x89PNG')
    >>> panel.close()
"""
from __future__ import annotations

import os
from typing import Any, Hashable, Sequence

import ipywidgets as w
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from oml_viz.checks import check_int

from .base import Panel, item_categories
from .items import Items
from .png import captioned_strip, figure_to_png, rgb_to_png

_BASE_COLORS = ("label", "category", "label_issue")
_NONE_COLOR = "#cccccc"


def per_query_metrics(top_n: int) -> list[str]:
    """Per-query metric names a result with ``top_n`` columns can colour by (k in 1, 3, 5, 10, top_n)."""
    ks = sorted({k for k in (1, 3, 5, 10, top_n) if 1 <= k <= top_n})
    return [f"{kind}/{k}" for kind in ("map", "precision", "cmc") for k in ks]


def _is_result(obj: Any) -> bool:
    return hasattr(obj, "retrieved_ids") and hasattr(obj, "per_query")


class EmbeddingMapPanel(Panel):
    """A 2-D map of the items, coloured by label, category, a per-query metric or label-issue score.

    Args:
        xy_or_res: (N, 2) coordinates, or a :class:`oml_viz.RetrievalResult` (mapped with
            :func:`oml_viz.project`, cached by content).
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        color_by: ``"label"``, ``"category"``, a per-query metric such as ``"map/5"`` (needs a
            result) or ``"label_issue"`` (needs a result or ``issues``).
        method, seed: the projection of a result (``"umap"``, ``"pca"``, ``"tsne"``).
        labels, categories: one per item (default: the result's, else the dataframe's columns).
        issues: a :func:`oml_viz.find_label_issues` table (default: computed from the result when
            ``"label_issue"`` is first asked for).
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        grid_size: at most this many selected items are shown; tile_size: their side in pixels.
        height: the map's height in pixels.
        background: False makes every render finish before a call returns.
    """

    css_class = "ov-embedding-map"

    def __init__(self, xy_or_res: Any, images: Any, *, color_by: str = "label", method: str = "umap", seed: int = 0,
                 labels: Sequence[Hashable] | None = None, categories: Sequence[Hashable] | None = None,
                 issues: pd.DataFrame | None = None, dataset_root: str | os.PathLike | None = None,
                 grid_size: int = 24, tile_size: int = 96, height: int = 420, background: bool = True):
        super().__init__(background=background)
        import jscatter  # the maps extra: pip install 'oml_viz[maps]'

        self.res = xy_or_res if _is_result(xy_or_res) else None
        if self.res is not None:
            from oml_viz.analysis import project

            small = self.res.n_items < 4  # too few points for a neighbour graph: PCA places them
            xy = project(self.res.embeddings, method="pca" if small else method, seed=seed, distance=self.res.distance)
            if labels is None:
                labels = self.res.labels
        else:
            xy = np.asarray(xy_or_res, dtype=np.float32)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"xy_or_res must be (N, 2) coordinates or a RetrievalResult; got shape {xy.shape}")
        if not np.isfinite(xy).all():
            rows = np.flatnonzero(~np.isfinite(xy).all(1))[:5].tolist()
            raise ValueError(f"xy_or_res has NaN or inf in rows {rows}")
        self.xy = xy
        self.items = Items(images, dataset_root, labels=labels)
        if len(self.items) != len(xy):
            raise ValueError(f"images holds {len(self.items)} items but the map has {len(xy)} points")
        for name, v in (("grid_size", grid_size), ("tile_size", tile_size), ("height", height)):
            check_int(name, v, low=1)
        self.grid_size, self.tile_size = int(grid_size), int(tile_size)
        n = len(xy)
        if self.res is not None:
            self.categories = item_categories(images, self.res, categories)
        elif categories is not None or (isinstance(images, pd.DataFrame) and "category" in images.columns):
            self.categories = np.asarray(categories if categories is not None else images["category"], dtype=object)
            if len(self.categories) != n:
                raise ValueError(f"categories has {len(self.categories)} values for {n} items")
        else:
            self.categories = None
        self._issues = issues
        options = ["label"] + (["category"] if self.categories is not None else [])
        if self.res is not None or issues is not None:
            options.append("label_issue")
        if self.res is not None:
            options += per_query_metrics(int(self.res.retrieved_ids.shape[1]))
        if color_by not in options:
            if self.res is not None and "/" in color_by:
                self.res.per_query(color_by)  # a clear error for an unknown metric or k above top_n
                options.append(color_by)
            else:
                raise ValueError(f"color_by must be one of {options}; got {color_by!r}")

        label_text = (np.array([str(v) for v in self.items.labels], dtype=object) if self.items.labels is not None
                      else np.full(n, "", dtype=object))
        self.data = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "id": np.arange(n),
                                  "label": pd.Categorical(label_text)})
        if self.categories is not None:
            self.data["category"] = pd.Categorical([str(c) for c in self.categories])
        self.data["value"] = np.zeros(n, dtype=np.float32)
        self.selected: list[int] = []
        self.scatter = jscatter.Scatter(data=self.data, x="x", y="y", height=int(height), size=4 if n > 20000 else 6)
        self.scatter.tooltip(True, properties=["id", "label"])
        self.scatter.legend(True)
        self.map = self.scatter.widget
        self.map.add_class("ov-map-scatter")
        self.map.observe(self._on_selection, names="selection")

        self.color = w.Dropdown(options=options, value=color_by, description="colour", layout=w.Layout(width="220px"))
        self.color.add_class("ov-map-color")
        self.color.observe(lambda _: self._apply_color(), names="value")
        self.info = w.HTML()
        self.info.add_class("ov-map-info")
        self.selection_info = w.HTML("<i>Lasso (shift + drag) or click points to see their images.</i>")
        self.selection_info.add_class("ov-map-selection")
        self.grid = self._slot("ov-map-grid")
        self.children = [w.HBox([self.color, self.info]), self.scatter.show(),
                         w.HBox([self.selection_info, self.grid.progress]), self.grid.image, self.grid.status]
        self._apply_color()
        self._start()

    # ---------------------------------------------------------------- colours
    @property
    def issues(self) -> pd.DataFrame | None:
        """The label-issue table (computed from the result on first use)."""
        if self._issues is None and self.res is not None:
            from oml_viz.analysis.label_issues import find_label_issues

            n = self.res.n_items
            self._issues = find_label_issues(self.res.embeddings, self.res.labels, k=min(10, n - 1),
                                             distance=self.res.distance)
        return self._issues

    def color_values(self, color_by: str | None = None) -> np.ndarray:
        """The (N,) values the map is coloured by (labels / categories as strings, scores as floats)."""
        color_by = self.color.value if color_by is None else color_by
        if color_by in ("label", "category"):
            return self.data[color_by].to_numpy()
        n = len(self.xy)
        out = np.full(n, np.nan, dtype=np.float32)
        if color_by == "label_issue":
            table = self.issues
            out[table.index.to_numpy()] = table["score"].to_numpy(np.float32)
        else:
            out[self.res.query_ids] = self.res.per_query(color_by)
        return out

    def _apply_color(self) -> None:
        by = self.color.value
        if by in ("label", "category"):
            self.scatter.color(by=by, map="auto")
            self.info.value = f"&nbsp;{self.data[by].nunique()} {by}s"
        else:
            values = self.color_values(by)
            # a missing value (not a query) is drawn below the scale's low end, in grey
            self.data["value"] = np.where(np.isnan(values), -0.001, values).astype(np.float32)
            cmap = "magma_r" if by == "label_issue" else "viridis"
            self.scatter.data(self.data, use_index=False)
            self.scatter.color(by="value", map=cmap, norm=(0.0, 1.0))
            what = "suspected label error (1 = likely)" if by == "label_issue" else f"{by} per query"
            self.info.value = f"&nbsp;colour: {what}"

    # ---------------------------------------------------------------- selection
    def select(self, item_ids: Sequence[int]) -> None:
        """Select items (as a lasso would): the map highlights them and the grid shows them."""
        ids = [self.items.check_id(int(i), "item_ids") for i in item_ids]
        self.scatter.selection(np.asarray(ids, dtype=np.int64))
        self._set_selected(ids)

    def _on_selection(self, change: dict) -> None:
        new = change.get("new")
        self._set_selected([] if new is None else [int(i) for i in np.asarray(new).ravel()])

    def _set_selected(self, ids: list[int]) -> None:
        ids = list(dict.fromkeys(ids))
        if ids == self.selected:
            return
        self.selected = ids
        self._refresh()

    # ---------------------------------------------------------------- views
    def _grid_view(self) -> tuple[tuple, Any]:
        shown = self.selected[:self.grid_size]
        total = len(self.selected)
        items, tile = self.items, self.tile_size

        def make() -> bytes:
            if not shown:
                return rgb_to_png(captioned_strip([np.full((8, 8, 3), 245, np.uint8)],
                                                  ["no selection:\nlasso or click points"], side=tile))
            rows = []
            per_row = 8
            for start in range(0, len(shown), per_row):
                chunk = shown[start:start + per_row]
                imgs = [_safe_image(items, i) for i in chunk]
                caps = [items.describe(i).replace(" · ", "\n") for i in chunk]
                rows.append(captioned_strip(imgs, caps, side=tile))
            width = max(r.shape[1] for r in rows)
            out = np.full((sum(r.shape[0] for r in rows), width, 3), 255, np.uint8)
            y = 0
            for r in rows:
                out[y:y + r.shape[0], :r.shape[1]] = r
                y += r.shape[0]
            return rgb_to_png(out)

        if total:
            self.selection_info.value = (f"<b>{total} selected</b>"
                                         + (f", the first {len(shown)} shown" if total > len(shown) else ""))
        return ("grid", tuple(shown), tile), make

    def _views(self) -> list:
        return [(self.grid, *self._grid_view())]

    def map_png(self) -> bytes:
        """The map as a static image (matplotlib), coloured as now, the selection outlined."""
        by = self.color.value
        values = self.color_values(by)
        fig = Figure(figsize=(7, 5), dpi=100)
        ax = fig.add_subplot()
        s = max(1.0, min(12.0, 4000.0 / max(len(self.xy), 1)))
        if by in ("label", "category"):
            codes = pd.Categorical(values).codes
            ax.scatter(self.xy[:, 0], self.xy[:, 1], c=codes, cmap="tab20", s=s, linewidths=0)
        else:
            nan = np.isnan(values)
            ax.scatter(self.xy[nan, 0], self.xy[nan, 1], c=_NONE_COLOR, s=s, linewidths=0)
            sc = ax.scatter(self.xy[~nan, 0], self.xy[~nan, 1], c=values[~nan], s=s, linewidths=0, vmin=0, vmax=1,
                            cmap="magma_r" if by == "label_issue" else "viridis")
            fig.colorbar(sc, ax=ax, shrink=0.8, label=by)
        if self.selected:
            sel = np.asarray(self.selected)
            ax.scatter(self.xy[sel, 0], self.xy[sel, 1], facecolors="none", edgecolors="#d62728", s=4 * s + 12,
                       linewidths=1.0)
        ax.set_title(f"embedding map, coloured by {by}" + (f", {len(self.selected)} selected" if self.selected else ""),
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        return figure_to_png(fig)

    def view_png(self) -> bytes:
        """The static map above the selection grid, as one PNG."""
        from .png import stack_pngs

        return stack_pngs([self.map_png(), super().view_png()])

    def close(self) -> None:
        if not self._closed:
            try:
                self.map.unobserve(self._on_selection, names="selection")
            except ValueError:
                pass
        super().close()


def _safe_image(items: Items, i: int) -> np.ndarray:
    try:
        return items.image(i)
    except Exception:  # a missing file shows as a grey tile; the caption still names the item
        return np.full((8, 8, 3), 200, np.uint8)
