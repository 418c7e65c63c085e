"""Stage 1: training the motion autoencoder (DAWN's latent flow generator)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from dawn_lightning.callbacks.samples import Samples
from dawn_lightning.checkpoints import MOTION, add_record
from dawn_lightning.metrics.lpips import LPIPS
from dawn_lightning.models.common.perceptual import PyramidPerceptualLoss
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.motion.equivariance import RandomTPS, equivariance_losses
from dawn_lightning.models.motion.region_predictor import box_region_loss
from dawn_lightning.tensors.boxes import box_mask
from dawn_lightning.tensors.draws import SampleDraws
from dawn_lightning.training.optim import optimizer_with_schedule
from dawn_lightning.training.visuals import motion_grid

log = logging.getLogger(__name__)
# Frozen helpers (VGG, LPIPS) are rebuilt from config, never saved in checkpoints.
AUXILIARY_PREFIXES = ("perceptual.", "val_metrics.")


class MotionAutoencoderModule(L.LightningModule):
    """Trains `MotionAutoencoder` to reconstruct a driving frame from a source frame of the same video.

    Loss (MRAA): multi-scale perceptual pyramid (VGG19 features, or multi-scale L1 + SSIM without weights)
    + equivariance of region shifts and affines under a random affine + thin-plate-spline warp
    + ``mouth_weight`` x L1 inside the driving frame's mouth box (grown by ``mouth_margin``). The mouth is a
    few hundredths of the image, so a whole-image loss lets a small model leave it closed; DAWN's stage 1
    has no such term (``mouth_weight: 0`` restores it)
    + ``mouth_region_weight`` x L1 between region 0's moments and the driving mouth box's (`box_region_loss`),
    which ties one region to the mouth so that its opening reaches the flow predictor (0: DAWN's unguided
    regions).
    Validation: L1, PSNR, SSIM and LPIPS of the reconstruction on held-out identities, and an image grid.
    """

    def __init__(
        self,
        net: MotionAutoencoder,
        optimizer: Callable,
        scheduler: Callable | None = None,
        perceptual_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125),
        perceptual_weight: float = 10.0,
        vgg_weights: str | None = None,
        equivariance_shift: float = 10.0,
        equivariance_affine: float = 10.0,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        lpips_weights: str | None = None,
        mouth_weight: float = 0.0,
        mouth_margin: float = 0.25,
        mouth_region_weight: float = 0.0,
        num_logged_samples: int = 6,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.perceptual = PyramidPerceptualLoss(tuple(perceptual_scales), perceptual_weight, vgg_weights)
        lpips = LPIPS(lpips_weights)
        self.val_metrics = MetricCollection(
            {
                "l1": MeanAbsoluteError(),
                "psnr": PeakSignalNoiseRatio(data_range=1.0),
                "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
                lpips.name: lpips,
            },
            prefix="val/",
        )
        self._logged_batch: dict | None = None

    def losses(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict]:
        """The loss terms, each a mean over the samples; random warps from each sample's ``seed`` if the
        batch has them (training), so a batch split across ranks computes what it does whole."""
        source, driving = batch["source"], batch["driving"]
        out = self.net(source, driving)
        losses = dict(self.perceptual(out["prediction"], driving))
        h = self.hparams
        if h.equivariance_shift or h.equivariance_affine:
            draws = SampleDraws.for_batch(batch, len(driving))
            transform = RandomTPS(
                len(driving), h.sigma_affine, h.sigma_tps, h.points_tps, device=driving.device, draws=draws
            )
            transformed = self.net.regions(transform.transform_frame(driving))
            equivariance = equivariance_losses(transformed, out["driving_regions"], transform)
            losses["equivariance_shift"] = h.equivariance_shift * equivariance["equivariance_shift"]
            losses["equivariance_affine"] = h.equivariance_affine * equivariance["equivariance_affine"]
        if h.mouth_weight:
            mask = box_mask(batch["driving_mouth_box"], driving.shape[-1], h.mouth_margin)
            error = ((out["prediction"] - driving).abs() * mask).sum((1, 2, 3))
            inside = (mask.sum((1, 2, 3)) * driving.shape[1]).clamp_min(1)
            losses["mouth_l1"] = h.mouth_weight * (error / inside).mean()  # each sample's, averaged
        if h.mouth_region_weight:
            guidance = box_region_loss(out["driving_regions"], batch["driving_mouth_box"])
            losses["mouth_region"] = h.mouth_region_weight * guidance
        losses["loss"] = sum(losses.values())
        return losses, out

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        losses, _ = self.losses(batch)
        parts = {f"train/{k}": v for k, v in losses.items() if k != "loss"}
        self.log_dict(parts, batch_size=len(batch["source"]))
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=len(batch["source"]))
        return losses["loss"]

    def validation_step(self, batch: dict, batch_index: int) -> None:
        losses, out = self.losses(batch)
        prediction = out["prediction"].clamp(0, 1)
        self.val_metrics.update(prediction, batch["driving"])
        self.log("val/loss", losses["loss"], batch_size=len(batch["source"]), sync_dist=True)
        if batch_index == 0:
            keep = slice(0, self.hparams.num_logged_samples)
            self._logged_batch = {
                "source": batch["source"][keep],
                "driving": batch["driving"][keep],
                **{k: out[k][keep] for k in ("prediction", "warped", "occlusion")},
                "heatmap": out["driving_regions"]["heatmap"][keep],
            }

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        self._logged_batch = None

    def log_samples(self) -> Samples | None:
        """The first validation batch's source, driving frame, prediction, warped source, occlusion and
        regions as one image grid (written by `LogSamples`)."""
        if self._logged_batch is None:
            return None
        tag = "val/source|driving|prediction|warped|occlusion|regions"
        return Samples(images={tag: motion_grid(**self._logged_batch)})

    def configure_optimizers(self):
        return optimizer_with_schedule(
            self, self.net.parameters(), self.optimizer_factory, self.scheduler_factory
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        add_record(checkpoint, MOTION, {"config": self.net.config})
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(AUXILIARY_PREFIXES)
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        own = self.state_dict()
        checkpoint["state_dict"].update({k: v for k, v in own.items() if k.startswith(AUXILIARY_PREFIXES)})
