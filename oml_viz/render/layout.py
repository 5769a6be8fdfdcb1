"""Pixel geometry of a queries grid: where each tile and its title go.

The grid is one RGB mosaic drawn at one figure pixel per mosaic pixel (fast: one image and a few
texts instead of dozens of axes), so this geometry is also where tests look for frame colours.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridLayout:
    """Rows of ``1 + n_instances + n_gt`` tiles: query | results | ground truths.

    A wider gap separates the three groups. All sizes are in pixels.
    """

    n_rows: int
    n_instances: int
    n_gt: int
    tile: int = 128
    pad: int = 6
    group_gap: int = 18
    title_h: int = 30
    header_h: int = 0

    @property
    def n_cols(self) -> int:
        return 1 + self.n_instances + self.n_gt

    @property
    def frame(self) -> int:
        """Frame thickness."""
        return max(3, self.tile // 32)

    @property
    def row_h(self) -> int:
        return self.title_h + self.tile + self.pad

    def col_x(self, col: int) -> int:
        """Left x of column ``col``."""
        if not 0 <= col < self.n_cols:
            raise IndexError(f"column {col} outside 0..{self.n_cols - 1}")
        x = self.pad + col * (self.tile + self.pad)
        if col >= 1:
            x += self.group_gap
        if col >= 1 + self.n_instances and self.n_gt:
            x += self.group_gap
        return x

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a tile, right/bottom exclusive."""
        if not 0 <= row < self.n_rows:
            raise IndexError(f"row {row} outside 0..{self.n_rows - 1}")
        x0 = self.col_x(col)
        y0 = self.header_h + self.pad + row * self.row_h + self.title_h
        return x0, y0, x0 + self.tile, y0 + self.tile

    @property
    def width(self) -> int:
        return self.col_x(self.n_cols - 1) + self.tile + self.pad

    @property
    def height(self) -> int:
        return self.header_h + self.pad + self.n_rows * self.row_h

    def column_role(self, col: int) -> str:
        """``"query"``, ``"result"`` or ``"gt"``."""
        if col == 0:
            return "query"
        return "result" if col <= self.n_instances else "gt"
