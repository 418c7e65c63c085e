"""An exponential moving average (EMA) of a stage's weights, built on Lightning's `WeightAveraging`.

Validation runs on the average (the module keeps its raw weights after fitting); checkpoints hold the
average as ``state_dict`` (so every stage loader, and therefore `DawnPipeline`, uses it by default) and the
raw weights beside it as ``current_model_state``; resuming restores both (Lightning's `WeightAveraging`
swaps, saves and restores them). Buffers (normalisation statistics, counters) are copied, not averaged;
frozen parameters (stage 3's stage-1 model) stay exact.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging


def ema_average(
    average: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor, decay: float, warmup: bool
) -> torch.Tensor:
    """One EMA step: ``average + (1 - d) (current - average)`` with d = ``decay``, or with warm-up
    d = min(decay, (1 + n) / (10 + n)) after n updates (as diffusers/ema-pytorch), so that short runs average
    over their recent steps rather than their initialisation. A parameter that does not change stays exact."""
    d = torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay) if warmup else torch.tensor(decay)
    return average.lerp(current, (1 - d).to(device=average.device, dtype=average.dtype))


class EMA(WeightAveraging):
    """EMA of the weights, updated after every ``every_n_steps``-th optimiser step from ``start_step`` on.

    decay: the EMA decay (0.999: about the last 1000 updates); warmup: ramp the decay up from 2/11
    (see `ema_average`); device: where the average lives (default: beside the model; "cpu" saves GPU memory).
    """

    def __init__(
        self,
        decay: float = 0.999,
        warmup: bool = True,
        start_step: int = 0,
        every_n_steps: int = 1,
        device: str | None = None,
    ):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if every_n_steps < 1 or start_step < 0:
            raise ValueError(
                f"need every_n_steps >= 1 and start_step >= 0, got {every_n_steps}, {start_step}"
            )
        super().__init__(
            device=device, use_buffers=False, avg_fn=partial(ema_average, decay=decay, warmup=warmup)
        )
        self.start_step, self.every_n_steps = start_step, every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step and step_idx % self.every_n_steps == 0

    # Buffers are not averaged: the model's are the truth, copied into the average before it is used (a stage
    # may compute statistics in its setup or on_fit_start, after the average was made).
    def _sync_buffers(self, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            for average, current in zip(
                self._average_model.module.buffers(), pl_module.buffers(), strict=True
            ):
                average.detach().copy_(current.detach())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync_buffers(pl_module)
        super().on_validation_epoch_start(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ):
        self._sync_buffers(pl_module)
        super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keeps the raw weights in the module (`WeightAveraging` would copy the average in): the checkpoint
        that `ModelCheckpoint` writes after this hook must still hold both to be resumable."""
