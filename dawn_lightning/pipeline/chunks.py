"""Splitting a long generation into chunks: stage 2's consecutive ones, stage 3's overlapping windows whose
motion is cross-faded where they overlap."""

from __future__ import annotations

import torch


def chunk_bounds(num_frames: int, max_frames: int | None) -> list[tuple[int, int]]:
    """[start, stop) of consecutive chunks of at most ``max_frames`` (one chunk when None)."""
    step = max_frames or num_frames
    return [(start, min(start + step, num_frames)) for start in range(0, num_frames, step)]


def overlapping_chunks(num_frames: int, max_frames: int, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) windows of at most ``max_frames`` covering ``num_frames``, each sharing ``overlap``
    frames with the next (0 <= overlap < max_frames / 2)."""
    if not 0 <= 2 * overlap < max_frames:
        raise ValueError(f"overlap must be in [0, max_frames / 2), got {overlap} for max_frames={max_frames}")
    bounds, start = [], 0
    while True:
        stop = min(start + max_frames, num_frames)
        bounds.append((start, stop))
        if stop == num_frames:
            return bounds
        start = stop - overlap


def crossfade_weights(bounds: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per window, a weight per frame (F_k,): 1 inside, a linear ramp over each overlap with a neighbour,
    rising in the later window as it falls in the earlier one, so that the weights of every frame sum to 1."""
    weights = []
    for k, (start, stop) in enumerate(bounds):
        weight = torch.ones(stop - start)
        if k > 0:
            shared = bounds[k - 1][1] - start
            weight[:shared] = torch.arange(1, shared + 1) / (shared + 1)
        if k + 1 < len(bounds):
            shared = stop - bounds[k + 1][0]
            weight[stop - start - shared :] *= torch.arange(shared, 0, -1) / (shared + 1)
        weights.append(weight)
    return weights


def blend_chunks(pieces: list[torch.Tensor], bounds: list[tuple[int, int]], num_frames: int) -> torch.Tensor:
    """One sequence (B, C, num_frames, ...) from windows (B, C, F_k, ...) at ``bounds``, cross-faded where
    they overlap (`crossfade_weights`)."""
    first = pieces[0]
    out = first.new_zeros((*first.shape[:2], num_frames, *first.shape[3:]))
    for piece, (start, stop), weight in zip(pieces, bounds, crossfade_weights(bounds), strict=True):
        shape = (1, 1, -1) + (1,) * (piece.ndim - 3)
        out[:, :, start:stop] += piece * weight.to(piece).view(shape)
    return out
