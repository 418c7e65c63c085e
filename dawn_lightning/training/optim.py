"""What the stage modules' ``configure_optimizers`` share."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning as L
import torch


def optimizer_with_schedule(
    module: L.LightningModule,
    params: Iterable[torch.nn.Parameter],
    optimizer: Callable,
    scheduler: Callable | None,
):
    """``optimizer(params=...)`` and, if given, ``scheduler(optimizer, T_max=the run's optimiser steps)``
    stepped every batch, in the form ``configure_optimizers`` returns."""
    built = optimizer(params=params)
    if scheduler is None:
        return built
    steps = max(1, int(module.trainer.estimated_stepping_batches))
    return {
        "optimizer": built,
        "lr_scheduler": {"scheduler": scheduler(built, T_max=steps), "interval": "step"},
    }
