"""Matplotlib figures for TensorBoard: generated vs ground-truth tracks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dawn_lightning import FPS  # noqa: E402


def track_figure(generated: torch.Tensor, truth: torch.Tensor, names: list[str]):
    """One panel per channel of (T, K) tracks, time in seconds."""
    count = generated.shape[1]
    figure, axes = plt.subplots(count, 1, figsize=(8, 1.3 * count), sharex=True, squeeze=False)
    seconds = torch.arange(len(generated)) / FPS
    for k, axis in enumerate(axes[:, 0]):
        axis.plot(seconds, truth[:, k], color="0.4", label="ground truth")
        axis.plot(seconds, generated[:, k], color="tab:red", label="generated")
        axis.set_ylabel(names[k], fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    figure.tight_layout()
    return figure
