"""Boxes on image grids."""

from __future__ import annotations

import torch


def box_mask(boxes: torch.Tensor, size: int, margin: float = 0.25, cover: bool = False) -> torch.Tensor:
    """(B, 4) normalised (x0, y0, x1, y1) boxes -> float (B, 1, size, size) masks of the boxes grown by
    ``margin`` of their width and height on each side: the cells whose centres the box contains, or with
    ``cover`` every cell it overlaps. At a coarse grid (a 64 px frame's 16 x 16 motion) a mouth box spans
    about one cell: centres keep often a single row and sometimes none, while ``cover`` never misses a cell
    the mouth reaches."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    grow_x, grow_y = margin * (x1 - x0), margin * (y1 - y0)
    start = torch.arange(size, dtype=boxes.dtype, device=boxes.device) / size

    def cells(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:  # (B,) edges -> (B, size)
        if cover:
            return (start + 1 / size > low[:, None]) & (start < high[:, None])
        centres = start + 0.5 / size
        return (centres >= low[:, None]) & (centres <= high[:, None])

    inside_x, inside_y = cells(x0 - grow_x, x1 + grow_x), cells(y0 - grow_y, y1 + grow_y)
    return (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1).to(boxes.dtype)
