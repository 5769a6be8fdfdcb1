"""What every panel shares: it is a ``VBox``, owns image slots, exports its view, closes cleanly."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Hashable, Sequence

import ipywidgets as w
import numpy as np
import pandas as pd

from oml_viz.data.atomic import write_atomic  # noqa: F401 (panels import it from here)

from .png import PngCache, stack_pngs
from .slot import ImageSlot, run_on_worker


def close_tree(widget: w.Widget) -> None:
    """Close ``widget`` and every widget below it (children, tab pages)."""
    for child in getattr(widget, "children", ()) or ():
        if isinstance(child, w.Widget):
            close_tree(child)
    widget.close()


def item_categories(images: Any, res: Any, categories: Sequence[Hashable] | None) -> np.ndarray | None:
    """One category per item: ``categories``, else the result's, else the dataframe's column."""
    if categories is not None:
        cats = np.asarray(categories, dtype=object)
        if len(cats) != len(res.labels):
            raise ValueError(f"categories has {len(cats)} values for {len(res.labels)} items")
        return cats
    if getattr(res, "categories", None) is not None:
        return np.asarray(res.categories, dtype=object)
    if isinstance(images, pd.DataFrame) and "category" in images.columns:
        return images["category"].to_numpy(dtype=object)
    return None


def valid_ks(values: Sequence[int], top_n: int) -> tuple[int, ...]:
    """The distinct k in ``values`` that a result with ``top_n`` columns can answer, ascending."""
    return tuple(sorted({int(k) for k in values if 1 <= int(k) <= top_n}))


def default_metric(top_n: int, metric: str | None = None) -> str:
    """``metric``, or when None ``"map/5"`` (``map/top_n`` for a result with fewer columns)."""
    return metric if metric is not None else f"map/{min(5, int(top_n))}"


class Panel(w.VBox):
    """Base of the panels: a VBox with image slots, a PNG cache and a static export.

    Subclasses make their slots with :meth:`_slot`, call :meth:`_refresh` after a state change,
    and implement :meth:`_views` -> [(slot, key, make)] for the current state.
    """

    css_class = "ov-panel"
    _closed = False  # class defaults: a constructor that raised early still closes cleanly
    _slots: tuple[ImageSlot, ...] = ()
    cache: PngCache | None = None

    def __init__(self, *, background: bool = True, cache_items: int = 256, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_class("ov-panel")
        self.add_class(self.css_class)
        self.background = background
        self.cache = PngCache(max_items=cache_items)
        self._slots: list[ImageSlot] = []  # type: ignore[assignment]
        self._closed = False

    def _slot(self, css: str) -> ImageSlot:
        slot = ImageSlot(self.cache, css=css, background=self.background)
        self._slots.append(slot)
        return slot

    def _views(self) -> list[tuple[ImageSlot, Hashable, Any]]:
        raise NotImplementedError

    def _refresh(self) -> None:
        if self._closed:
            return
        for slot, key, make in self._views():
            slot.show(key, make)

    def _start(self) -> None:
        """First render, waited for: the cell that makes a panel ends with its image shown, and
        the model is free again for the user's next cell."""
        self._refresh()
        self.wait()

    def wait(self, timeout: float | None = 120.0) -> "Panel":
        """Block until the panel's pending renders are done (scripts, tests, before an export)."""
        for slot in self._slots:
            slot.wait(timeout)
        return self

    def view_png(self) -> bytes:
        """The current view as one PNG (rendered now if it is not cached)."""
        pngs = []
        for slot, key, make in self._views():
            png = self.cache.get(key)
            if png is None:
                png = run_on_worker(make)
                self.cache.put(key, png)
            pngs.append(png)
        return pngs[0] if len(pngs) == 1 else stack_pngs(pngs)

    def export_png(self, path: str | os.PathLike) -> Path:
        """Write the current view to ``path`` as a PNG; returns the path."""
        return write_atomic(path, self.view_png())

    def close(self) -> None:
        """Close every child widget and drop cached images."""
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            slot.close()
        for child in list(self.children or ()):
            close_tree(child)
        if self.cache is not None:
            self.cache.clear()
        super().close()
