"""Training the project's SyncNet (`CompactSyncNet`) contrastively on a clip store, for LSE-C/LSE-D on data
the public SyncNet does not fit (the synthetic faces).

Loss: InfoNCE over the batch (the unit-norm lip embedding of each window must pick its in-sync MFCC window
among every in-sync and every shifted MFCC window of the batch, similarities / ``temperature``); it learns
far faster on a CPU than SyncNet's original margin loss. Logged: ``train/loss``, ``val/loss`` and
``val/sync_accuracy``, the fraction of windows whose in-sync distance d+ is below their shifted one d-
(0.5 = chance).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F

from dawn_lightning.checkpoints import SYNCNET, add_record
from dawn_lightning.models.syncnet import CompactSyncNet


class SyncNetModule(L.LightningModule):
    def __init__(
        self,
        net: CompactSyncNet,
        optimizer: Callable,
        scheduler: Callable | None = None,
        temperature: float = 0.1,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net, self.temperature = net, temperature
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None:
            if datamodule.crop_size != self.net.crop_size:
                raise ValueError(
                    f"datamodule.crop_size {datamodule.crop_size} != model.net.crop_size {self.net.crop_size}"
                )
            self.net.crop_box.copy_(torch.tensor(datamodule.crop_box))
            mean, std = datamodule.mfcc_statistics()
            self.net.mfcc_mean.copy_(mean)
            self.net.mfcc_std.copy_(std)

    def loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(InfoNCE loss, fraction of windows with d+ < d-)."""
        lips = self.net.forward_lip(batch["lips"])
        audio = self.net.forward_aud(torch.cat([batch["synced"], batch["shifted"]]))
        logits = lips @ audio.T / self.temperature
        loss = F.cross_entropy(logits, torch.arange(len(lips), device=lips.device))
        synced, shifted = audio.chunk(2)
        accuracy = F.pairwise_distance(lips, synced) < F.pairwise_distance(lips, shifted)
        return loss, accuracy.float().mean()

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss, accuracy = self.loss(batch)
        size = len(batch["lips"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/sync_accuracy", accuracy, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        loss, accuracy = self.loss(batch)
        size = len(batch["lips"])
        self.log("val/loss", loss, batch_size=size, sync_dist=True)
        self.log("val/sync_accuracy", accuracy, prog_bar=True, batch_size=size, sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = {"scheduler": self.scheduler_factory(optimizer, T_max=steps), "interval": "step"}
        return [optimizer], [scheduler]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        add_record(checkpoint, SYNCNET, {"config": self.net.config})
