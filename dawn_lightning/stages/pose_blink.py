"""Stage 2: training the pose/blink generator (PBNet CVAE, or the diffusion variant) on audio windows."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from dawn_lightning import FPS
from dawn_lightning.callbacks.samples import Samples
from dawn_lightning.checkpoints import KEYS, POSE_BLINK, add_record
from dawn_lightning.metrics.motion_stats import (
    beat_align_score,
    blink_rate,
    high_pass,
    motion_beats,
    onset_frames_from_logmel,
)
from dawn_lightning.tensors.draws import SampleDraws

log = logging.getLogger(__name__)
SIGNALS = {"pose": ("pose",), "blink": ("blink",), "both": ("pose", "blink")}
CHANNELS = {"pose": 6, "blink": 2}
DEFAULT_LOSS_WEIGHTS = {"velocity": 0.0}


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


def _least_squares(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return 0.5 * ((logits - float(real)) ** 2).mean()


GAN_LOSSES = {"bce": _bce, "lsgan": _least_squares}


class PoseBlinkModule(L.LightningModule):
    """Learns p(pose, blink | audio, initial state) on windows of the clip store.

    States are normalised with per-channel statistics of the training store (computed at setup, saved in the
    checkpoint as buffers). The generator ``net`` returns unweighted loss terms from
    ``losses(x, audio, mask, channel_weights, velocity_weights)`` (PBNet: reconstruction, velocity, KL;
    diffusion: denoising, velocity) and its predicted deltas. This module weights them:

    - ``loss_weights`` by term name (1 where absent; velocity 0 by default); the blink channels' errors by
      ``blink_weight`` (blinks are rare and 2 of 8 channels); the velocity errors also by the inverse
      variance of each channel's frame-to-frame differences;
    - KL warm-up: 0 for ``kl_delay`` batches, then linear to ``kl_weight`` over ``kl_warmup`` batches;
    - with a ``discriminator``, from batch ``gan_delay`` on, a generator step (plus ``gan_weight`` times the
      adversarial term) alternates with a discriminator step on detached fakes; before that the
      discriminator is neither used nor updated. ``gan_loss``: ``bce`` (the reference's) or ``lsgan``
      (least squares, Mao et al. 2017: bounded gradients when the discriminator wins). ``gan_input``: the
      fakes are the reconstructions from the posterior (``reconstruction``, the reference's) or tracks
      decoded from prior samples (``prior``, the cLR-GAN half of BicycleGAN, Zhu et al. 2017: what
      generation uses).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        signals: str = "both",
        kl_weight: float = 0.01,
        kl_delay: int = 0,
        kl_warmup: int = 1000,
        discriminator: nn.Module | None = None,
        gan_weight: float = 0.6,
        gan_delay: int = 0,
        gan_loss: str = "bce",
        gan_input: str = "reconstruction",
        loss_weights: dict[str, float] | None = None,
        blink_weight: float = 1.0,
        gradient_clip: float = 2.0,
        num_plotted: int = 2,
    ):
        super().__init__()
        if signals not in SIGNALS:
            raise ValueError(f"signals must be one of {sorted(SIGNALS)}, got {signals!r}")
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {sorted(GAN_LOSSES)}, got {gan_loss!r}")
        if gan_input not in ("reconstruction", "prior"):
            raise ValueError(f"gan_input must be 'reconstruction' or 'prior', got {gan_input!r}")
        if gan_input == "prior" and not hasattr(net, "sample_deltas"):
            raise ValueError(f"gan_input='prior' needs sample_deltas, which {type(net).__name__} lacks")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "discriminator"], logger=False)
        self.automatic_optimization = False
        self.net, self.discriminator = net, discriminator
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        width = net.config["state_dim"]
        self.register_buffer("state_mean", torch.zeros(width))
        self.register_buffer("state_std", torch.ones(width))
        self.register_buffer("velocity_std", torch.ones(width))  # of the normalised states' frame differences
        blinks = torch.tensor([k == "blink" for k in SIGNALS[signals] for _ in range(CHANNELS[k])])
        self.register_buffer("channel_weights", torch.where(blinks, blink_weight, 1.0), persistent=False)
        self._validation: list[dict] = []
        self.audio_features: dict | None = None  # the store's audio feature spec, recorded in checkpoints

    # -- data -------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "train_statistics"):  # a module used without a store's data module
            return
        if stage == "fit" and not self._has_stats():
            self.fit_statistics(datamodule.train_statistics())
        self.audio_features = datamodule.data_spec["audio_features"]

    def _has_stats(self) -> bool:
        return bool((self.state_mean != 0).any() or (self.state_std != 1).any())

    def fit_statistics(self, statistics: dict[str, dict[str, torch.Tensor]]) -> None:
        """The per-channel mean and std of the states over the training frames, and the std of the normalised
        states' frame-to-frame differences (the velocity term weighs each channel by its inverse square, so
        the rare fast blinks do not drown the nods), from the store's statistics (`train_statistics`)."""
        names = SIGNALS[self.hparams.signals]
        self.state_mean.copy_(torch.cat([statistics[k]["mean"] for k in names]))
        self.state_std.copy_(torch.cat([statistics[k]["std"] for k in names]).clamp_min(1e-4))
        differences = torch.cat([statistics[k]["diff_std"] for k in names])
        self.velocity_std.copy_((differences / self.state_std).clamp_min(1e-4))

    def states(self, batch: dict) -> torch.Tensor:
        """The normalised state sequence (B, N, K) of a batch."""
        raw = torch.cat([batch[k] for k in SIGNALS[self.hparams.signals]], dim=-1)
        return (raw - self.state_mean) / self.state_std

    def denormalise(self, states: torch.Tensor) -> torch.Tensor:
        return states * self.state_std + self.state_mean

    # -- training ---------------------------------------------------------------------------------------
    @property
    def batches_seen(self) -> int:
        """Training batches before the current one (the fit loop's count, restored on resume; ``global_step``
        counts each optimiser's steps instead: one or two a batch)."""
        if self._trainer is None:
            return 0
        return max(0, self.trainer.fit_loop.epoch_loop.total_batch_idx)

    def gan_active(self) -> bool:
        return self.discriminator is not None and self.batches_seen >= self.hparams.gan_delay

    def kl_scale(self) -> float:
        h = self.hparams
        progress = (self.batches_seen - h.kl_delay) / max(1, h.kl_warmup)
        return h.kl_weight * min(1.0, max(0.0, progress))

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        x, mask = self.states(batch), batch["mask"]
        weights = self.channel_weights
        draws = SampleDraws.for_batch(batch, len(x), x.device)  # each sample's noise and dropout
        terms = self.net.losses(x, batch["audio"], mask, weights, weights / self.velocity_std**2, draws)
        delta = terms.pop("delta")
        weights = DEFAULT_LOSS_WEIGHTS | (self.hparams.loss_weights or {}) | {"kl": self.kl_scale()}
        loss = sum(weights.get(name, 1.0) * value for name, value in terms.items())
        fake = (x[:, :1] + delta) * mask[..., None]
        return loss, terms, fake, x * mask[..., None]

    def training_step(self, batch: dict, batch_index: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        size = len(batch["mask"])
        loss, terms, fake, real = self.generator_loss(batch)
        gan, criterion = self.gan_active(), GAN_LOSSES[self.hparams.gan_loss]
        if gan and self.hparams.gan_input == "prior":
            init, mask = real[:, 0], batch["mask"]
            fake = (init[:, None] + self.net.sample_deltas(batch["audio"], init, mask)) * mask[..., None]
        if gan:
            adversarial = criterion(self.discriminator(fake), True)
            terms["adversarial"] = adversarial
            loss = loss + self.hparams.gan_weight * adversarial
        self._step(optimizers[0], loss, self.net)
        if gan:
            loss_d = criterion(self.discriminator(real), True) + criterion(
                self.discriminator(fake.detach()), False
            )
            self._step(optimizers[1], loss_d, self.discriminator)
            terms["discriminator"] = loss_d
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=size)
        self.log("train/kl_scale", self.kl_scale(), batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)

    def _step(self, optimizer, loss: torch.Tensor, module: nn.Module) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(
            optimizer, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm"
        )
        optimizer.step()

    def configure_optimizers(self):
        optimizers = [self.optimizer_factory(params=self.net.parameters())]
        if self.discriminator is not None:
            optimizers.append(self.optimizer_factory(params=self.discriminator.parameters()))
        if self.scheduler_factory is None:
            return optimizers
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        return optimizers, [self.scheduler_factory(o, T_max=steps) for o in optimizers]

    # -- validation: generate from audio and the first frame, compare with the ground truth -------------
    def validation_step(self, batch: dict, batch_index: int) -> None:
        x, mask = self.states(batch), batch["mask"]
        loss, _, _, _ = self.generator_loss(batch)
        self.log("val/loss", loss, batch_size=len(mask), sync_dist=True)
        generated = self.net.generate(batch["audio"], x[:, 0], seed=batch_index, mask=mask)
        self._validation.append(
            {
                "generated": self.denormalise(generated).cpu(),
                "truth": self.denormalise(x).cpu(),
                "mask": mask.cpu(),
                "audio": batch["audio"].cpu(),
            }
        )

    def on_validation_epoch_end(self) -> None:
        if not self._validation:
            return
        metrics = compare_tracks(self._validation, self.hparams.signals)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, sync_dist=True)
        self._validation.clear()

    def log_samples(self) -> Samples | None:
        """Plots of the first validation batch's generated and true tracks (written by `LogSamples`)."""
        if not self._validation:
            return None
        from dawn_lightning.training.plots import track_figure

        first, figures = self._validation[0], {}
        for i in range(min(self.hparams.num_plotted, len(first["mask"]))):
            length = int(first["mask"][i].sum())
            figures[f"val/tracks_{i}"] = track_figure(
                first["generated"][i, :length], first["truth"][i, :length], self.channel_names()
            )
        return Samples(figures=figures)

    def channel_names(self) -> list[str]:
        names = {
            "pose": ["yaw", "pitch", "roll", "scale", "tx", "ty"],
            "blink": ["blink_left", "blink_right"],
        }
        return [n for k in SIGNALS[self.hparams.signals] for n in names[k]]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        record = {
            "class": type(self.net).__name__,
            "config": self.net.config,
            "signals": self.hparams.signals,
            "audio_features": self.audio_features,
        }
        add_record(checkpoint, POSE_BLINK, record)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.audio_features = checkpoint.get(KEYS[POSE_BLINK], {}).get("audio_features")


def compare_tracks(records: list[dict], signals: str) -> dict[str, float]:
    """Generated vs ground-truth tracks, in the store's units: L1/MSE per signal, pose diversity (std over
    time, generated / truth), the correlation of generated and true pitch, and of their fast parts (pitch
    minus its 1-s moving average: nods, without the slow drift that no audio predicts), blink rates per second
    (all blinks over all seconds, so short windows weigh what they last) and the beat-align score of the
    generated pose (high for jittery near-static tracks too: read it with the diversity)."""
    channels = (
        {"pose": slice(0, 6), "blink": slice(0, 2)}
        if signals != "both"
        else {"pose": slice(0, 6), "blink": slice(6, 8)}
    )
    sums: dict[str, list[float]] = {}
    pooled: dict[str, list] = {}  # blink rates: blinks / seconds over all windows, not a mean of window rates
    for record in records:
        for i in range(len(record["mask"])):
            length = int(record["mask"][i].sum())
            for name in SIGNALS[signals]:
                gen = record["generated"][i, :length, channels[name]]
                truth = record["truth"][i, :length, channels[name]]
                sums.setdefault(f"{name}_l1", []).append(float((gen - truth).abs().mean()))
                sums.setdefault(f"{name}_mse", []).append(float(((gen - truth) ** 2).mean()))
                if name == "pose":
                    sums.setdefault("pose_std_generated", []).append(float(gen[:, :3].std(0).mean()))
                    sums.setdefault("pose_std_truth", []).append(float(truth[:, :3].std(0).mean()))
                    onsets = onset_frames_from_logmel(record["audio"][i, :length])
                    sums.setdefault("beat_align", []).append(
                        beat_align_score(onsets, motion_beats(gen[:, :3]))
                    )
                    sums.setdefault("beat_align_truth", []).append(
                        beat_align_score(onsets, motion_beats(truth[:, :3]))
                    )
                    if length > 2 and gen[:, 1].std() > 0 and truth[:, 1].std() > 0:
                        pair = torch.stack([gen[:, 1], truth[:, 1]])
                        sums.setdefault("pitch_corr", []).append(float(torch.corrcoef(pair)[0, 1]))
                    fast = torch.stack([high_pass(gen[:, 1]), high_pass(truth[:, 1])])
                    if length > FPS and (fast.std(-1) > 0).all():
                        sums.setdefault("pitch_corr_fast", []).append(float(torch.corrcoef(fast)[0, 1]))
                else:
                    for key, track in (("blink_rate_generated", gen), ("blink_rate_truth", truth)):
                        blinks, frames = pooled.setdefault(key, [0.0, 0])
                        pooled[key] = [blinks + blink_rate(track) * length / FPS, frames + length]
    rates = {k: blinks * FPS / max(1, frames) for k, (blinks, frames) in pooled.items()}
    return {k: sum(v) / len(v) for k, v in sums.items()} | rates
