"""A per-video statistic averaged over videos (blink rate, pose diversity, beat alignment, speed)."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class VideoMean(Metric):
    """``update(value)`` adds one video's value; ``compute()`` is their mean. A list state ("cat"): every
    video counts once, whatever the shard sizes."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("values", [], dist_reduce_fx="cat")

    def update(self, value: float) -> None:
        self.values.append(torch.tensor([float(value)], dtype=torch.float64, device=self.device))

    def compute(self) -> torch.Tensor:
        if len(self.values) == 0:
            raise ValueError("VideoMean: no video was added")
        return dim_zero_cat(self.values).mean()
