"""Splitting a long generation into consecutive chunks."""

from __future__ import annotations


def chunk_bounds(num_frames: int, max_frames: int | None) -> list[tuple[int, int]]:
    """[start, stop) of consecutive chunks of at most ``max_frames`` (one chunk when None)."""
    step = max_frames or num_frames
    return [(start, min(start + step, num_frames)) for start in range(0, num_frames, step)]
