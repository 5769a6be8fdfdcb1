"""Figure helpers that need no pyplot (no global state: safe off the notebook's event loop)."""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 (H, W, 3) array (for loggers and tests).

    A figure on another canvas (a notebook's, pyplot's) is drawn with a temporary Agg canvas and
    left on its own canvas afterwards.

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure_to_array(Figure(figsize=(2, 1), dpi=50)).shape
        (50, 100, 3)
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    old = fig.canvas
    canvas = old if isinstance(old, FigureCanvasAgg) else FigureCanvasAgg(fig)
    try:
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        return np.ascontiguousarray(rgba[..., :3])
    finally:
        if canvas is not old:
            fig.set_canvas(old)
