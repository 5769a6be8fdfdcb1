"""An image slot: one ``ipywidgets.Image`` fed from a PNG cache, rendered off the event path.

A click changes a panel's view state; the panel asks its slot to show the PNG for that state.
From cache, the bytes are set on the existing Image widget at once. Otherwise a busy bar shows
and the PNG is made on the one worker thread all panels share: model hooks and timm's
``fused_attn`` flags are per model, so two explanations of one model must never overlap. A
request that a newer one has replaced before it starts is skipped, so fast clicking does not
queue stale work.

Example:
    >>> import numpy as np
    >>> from oml_viz.widgets.png import rgb_to_png
    >>> slot = ImageSlot(PngCache())
    >>> slot.show(("page", 2), lambda: rgb_to_png(np.zeros((4, 4, 3), np.uint8)))
    >>> slot.wait(); bytes(slot.image.value[:4])
    b'\\x89PNG'
    >>> ("page", 2) in slot.cache                            # the next show of this key is instant
    True
    >>> slot.close()
"""
from __future__ import annotations

import html
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Hashable

import ipywidgets as w

from .png import PngCache

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def worker() -> ThreadPoolExecutor:
    """The single worker thread shared by every panel (created on first use)."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oml-viz-widgets")
        return _EXECUTOR


def on_worker() -> bool:
    return threading.current_thread().name.startswith("oml-viz-widgets")


def run_on_worker(fn: Callable[[], bytes]) -> bytes:
    """Run ``fn`` on the shared worker and wait (inline when already there, to avoid a deadlock)."""
    return fn() if on_worker() else worker().submit(fn).result()


class ImageSlot:
    """An Image widget, a busy bar and a status line, kept in step with a view-state key.

    Args:
        cache: where PNGs for past keys live.
        css: CSS class of the Image widget (the browser test finds it by that).
        background: False renders on the worker but waits (for scripts and tests).
    """

    def __init__(self, cache: PngCache, css: str = "ov-image", background: bool = True):
        self.cache = cache
        self.background = background
        # flex-start: a VBox would otherwise stretch the image to the panel's width (blurry, huge)
        self.image = w.Image(format="png", value=b"", layout=w.Layout(max_width="100%", align_self="flex-start"))
        self.image.add_class(css)
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="rendering",
                                        layout=w.Layout(display="none", width="320px"))
        self.progress.add_class("ov-progress")
        self.status = w.HTML(value="")
        self.status.add_class("ov-status")
        self.key: Hashable | None = None
        self.error: str | None = None
        self._gen = 0
        self._lock = threading.Lock()
        self._futures: set[Future] = set()
        self._closed = False

    @property
    def png(self) -> bytes:
        """The PNG now shown (empty before the first render)."""
        return self.image.value

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in list(self._futures))

    def show(self, key: Hashable, make: Callable[[], bytes]) -> None:
        """Show the PNG for ``key``: from cache now, else made by ``make()`` on the worker."""
        with self._lock:
            self._gen += 1
            gen = self._gen
            self.key = key
        png = self.cache.get(key)
        if png is not None:
            self._apply(gen, png, "")
            return
        self.progress.value = 0.1
        self.progress.bar_style = "info"
        self.progress.layout.display = None  # shown; hidden it takes no room (display, not visibility)
        fut = worker().submit(self._run, gen, key, make)
        self._track(fut)
        if not self.background:
            fut.result()

    def prefetch(self, key: Hashable, make: Callable[[], bytes]) -> None:
        """Make the PNG for ``key`` into the cache when the worker is free; the view is unchanged."""
        if key in self.cache or self._closed:
            return

        def job() -> None:
            if key not in self.cache and not self._closed:
                try:
                    self.cache.put(key, make())
                except Exception:  # a prefetch is a guess: its failure shows when the view asks for it
                    pass

        self._track(worker().submit(job))

    def wait(self, timeout: float | None = 120.0) -> None:
        """Block until every render and prefetch asked of this slot has finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for fut in list(self._futures):
            fut.exception(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._closed = True
        for fut in list(self._futures):
            fut.cancel()
        for widget in (self.image, self.progress, self.status):
            widget.close()

    # ---------------------------------------------------------------- internals
    def _track(self, fut: Future) -> None:
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)

    def _run(self, gen: int, key: Hashable, make: Callable[[], bytes]) -> None:
        if gen != self._gen or self._closed:
            return  # a newer request replaced this one before it started
        png = self.cache.get(key)
        t0 = time.perf_counter()
        try:
            if png is None:
                png = make()
                self.cache.put(key, png)
        except Exception as e:  # shown in the panel: a broken image must not kill the widget
            self._fail(gen, f"{type(e).__name__}: {e}")
            return
        self._apply(gen, png, f"rendered in {time.perf_counter() - t0:.2f} s")

    def _apply(self, gen: int, png: bytes, note: str) -> None:
        with self._lock:
            if gen != self._gen or self._closed:
                return
            self.error = None
            self.image.value = png
            self.status.value = f"<span style='color:#666'>{html.escape(note)}</span>" if note else ""
            self.progress.value = 1.0
            self.progress.layout.display = "none"

    def _fail(self, gen: int, message: str) -> None:
        with self._lock:
            if gen != self._gen or self._closed:
                return
            self.error = message
            self.status.value = f"<span style='color:#b00'>{html.escape(message)}</span>"
            self.progress.bar_style = "danger"
            self.progress.value = 1.0
