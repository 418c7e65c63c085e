"""Normalisation statistics of the per-frame signals, computed once when a store's index is written.

A clip contributes sums (frames, sum, sum of squares; the same of its frame-to-frame differences) in float64;
the sums of a split's clips give each signal's per-channel mean and std (unbiased, as `torch.std`) and the std
of its differences. The stages read these from the index instead of every training clip's signals.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("frames", "sum", "sum_sq", "diffs", "diff_sum", "diff_sum_sq")


def clip_sums(signals: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per signal (T, D): the float64 sums of one clip."""
    sums = {}
    for name, values in signals.items():
        x = np.asarray(values, dtype=np.float64)
        d = np.diff(x, axis=0)
        sums[name] = {
            "frames": np.float64(len(x)),
            "sum": x.sum(0),
            "sum_sq": (x * x).sum(0),
            "diffs": np.float64(len(d)),
            "diff_sum": d.sum(0),
            "diff_sum_sq": (d * d).sum(0),
        }
    return sums


def add_sums(total: dict | None, sums: dict) -> dict:
    if total is None:
        return {name: dict(parts) for name, parts in sums.items()}
    for name, parts in sums.items():
        for field in FIELDS:
            total[name][field] = total[name][field] + parts[field]
    return total


def _std(count: float, total: np.ndarray, total_sq: np.ndarray) -> np.ndarray:
    mean = total / max(count, 1.0)
    variance = (total_sq - count * mean * mean) / max(count - 1.0, 1.0)
    return np.sqrt(np.clip(variance, 0.0, None))


def statistics(total: dict | None) -> dict[str, dict]:
    """{signal: {"frames", "mean", "std", "diff_std"}} as JSON lists, from summed clip sums."""
    if total is None:
        return {}
    return {
        name: {
            "frames": int(parts["frames"]),
            "mean": (parts["sum"] / max(parts["frames"], 1.0)).tolist(),
            "std": _std(parts["frames"], parts["sum"], parts["sum_sq"]).tolist(),
            "diff_std": _std(parts["diffs"], parts["diff_sum"], parts["diff_sum_sq"]).tolist(),
        }
        for name, parts in total.items()
    }
