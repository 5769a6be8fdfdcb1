"""The colours every oml_viz figure uses (as OML's): RGB tuples of 0..255 ints."""
from __future__ import annotations

QUERY_COLOR = (0, 0, 255)
RELEVANT_COLOR = (0, 255, 0)
NOT_RELEVANT_COLOR = (255, 0, 0)
GT_COLOR = (120, 120, 120)
# Not a role colour: a drawn bbox must not be mistaken for a frame.
BBOX_COLOR = (255, 200, 0)
BACKGROUND_COLOR = (255, 255, 255)
PLACEHOLDER_FILL = (236, 236, 236)
PLACEHOLDER_LINES = (200, 200, 200)
PLACEHOLDER_TEXT = (170, 0, 0)
