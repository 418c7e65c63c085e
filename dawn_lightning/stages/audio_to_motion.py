"""Stage 3: training the audio-to-motion diffusion (DAWN's A2V-FDM) on motion from a frozen stage 1."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from einops import rearrange

from dawn_lightning.callbacks.samples import Samples, VideoSample
from dawn_lightning.checkpoints import (
    AUDIO_TO_MOTION,
    KEYS,
    RAW_WEIGHTS_KEY,
    add_record,
    file_sha256,
    load_motion_autoencoder,
    load_motion_diffusion,
)
from dawn_lightning.diffusion import (
    DEFAULT_SAMPLER,
    flow_training_terms,
    guided_denoiser,
    logit_normal_times,
    sampler_from_settings,
    training_terms,
)
from dawn_lightning.diffusion.distillation import teacher_velocity
from dawn_lightning.models.audio_to_motion.blocks import ConditionedResBlock, PreNormResidual
from dawn_lightning.models.audio_to_motion.motion_diffusion import (
    MotionDiffusion,
    motion_targets,
    x0_to_motion,
)
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.tensors.boxes import box_mask
from dawn_lightning.tensors.draws import SampleDraws, torch_rng_seeded
from dawn_lightning.training.optim import optimizer_with_schedule
from dawn_lightning.training.speed import checkpoint_activations
from dawn_lightning.training.visuals import clip_grid

log = logging.getLogger(__name__)
FROZEN_PREFIX = "motion."
DATA_KEYS = ("audio_features", "frame_size", "store_kind", "mean_face_box")  # recorded of the training data
WEIGHT_KEYS = {"state_dict", RAW_WEIGHTS_KEY}  # the weights (the EMA's when there is one) and the raw ones


class AudioToMotionModule(L.LightningModule):
    """Learns p(motion x0 | reference frame, audio, pose delta, blink delta) by denoising.

    ``net`` builds the `MotionDiffusion` given the stage-1 model's ``z_channels`` (a Hydra partial). The
    stage-1 model of ``motion_ckpt`` is frozen: no gradients, outside the optimiser, kept in eval mode
    whatever Lightning does, and left out of checkpoints, which record its path and SHA-256 instead.

    Loss = MSE(output, target) (eps-MSE for eps prediction)
         + flow_weight * MSE(x0_pred clamped to the sample's range of x0, x0)
         + lip_weight * the first term restricted to the latent cells that each frame's mouth box (grown by
           ``lip_margin`` of its size on each side) overlaps,
    each a mean over the samples, all on the diffusion's variable (the normalised residual motion by default,
    see `MotionDiffusion`).
    The clamp bounds the x0 term at large t, where x0_pred = (x_t - sigma eps) / alpha multiplies the noise
    error by 1 / alpha (3e4 at t = 999 of the cosine schedule). Conditions are dropped per frame with
    probability ``cond_drop_prob`` (classifier-free guidance). Steps whose gradients are not finite are
    skipped and counted (``train/skipped_steps``). ``init_from`` starts from another stage-3 checkpoint's
    weights (curriculum B from A, or fine-tuning), without its optimiser state. ``activation_checkpointing``
    recomputes the U-Net blocks' activations in the backward pass (long clips in less memory).
    """

    def __init__(
        self,
        net: Callable[..., MotionDiffusion],
        motion_ckpt: str,
        optimizer: Callable,
        scheduler: Callable | None = None,
        flow_weight: float = 0.15,
        lip_weight: float = 1.0,
        lip_margin: float = 0.0,
        cond_drop_prob: float = 0.1,
        color_jitter: dict | None = None,
        init_from: str | None = None,
        sampler: dict | None = None,
        num_val_videos: int = 2,
        activation_checkpointing: bool = False,
        teacher: str | None = None,
        distill_guidance: float = 1.5,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.motion: MotionAutoencoder = load_motion_autoencoder(motion_ckpt).requires_grad_(False)
        self.motion_ckpt_sha256 = file_sha256(motion_ckpt)
        self.net = net(z_channels=self.motion.z_channels)
        if activation_checkpointing:  # long clips: U-Net block activations recomputed in the backward pass
            checkpoint_activations(self.net, (ConditionedResBlock, PreNormResidual))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.sampler_settings = DEFAULT_SAMPLER | (sampler or {})
        self.jitter = self._color_jitter(color_jitter)
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self._val_batch: dict | None = None
        # the store's audio feature spec, frame size and mean face box, recorded in checkpoints
        self.data_spec: dict = {}
        if init_from:
            self.load_weights(init_from)
        self._teacher: list[MotionDiffusion] = []  # a list: not a submodule, so not saved or averaged
        if teacher:
            self.load_teacher(teacher)

    @staticmethod
    def _color_jitter(settings: dict | None):
        if not settings:
            return None
        from torchvision.transforms import v2

        return v2.ColorJitter(**settings)

    def load_weights(self, path: str | Path) -> None:
        """Copies the network (and its condition statistics) of a stage-3 checkpoint."""
        net, _ = load_motion_diffusion(path)
        if net.config != self.net.config:
            raise ValueError(
                f"{path}: its network config {net.config} differs from this run's {self.net.config}"
            )
        self.net.load_state_dict(net.state_dict())
        log.info("stage 3 starts from the weights of %s", path)

    def load_teacher(self, path: str | Path) -> None:
        """Guidance distillation (`diffusion.distillation`): the student (this flow network) starts from the
        teacher's weights and condition and motion statistics, and learns its guided velocity."""
        if self.net.objective != "flow":
            raise ValueError("a distilled student is a flow network: set model.net.objective=flow")
        teacher, record = load_motion_diffusion(path)
        if record["motion_ckpt_sha256"] != self.motion_ckpt_sha256:
            raise ValueError(
                f"{path}: the teacher was trained with another stage 1 than {self.hparams.motion_ckpt}"
            )
        shared = ("objective", "prediction", "schedule", "num_timesteps")
        if {k: v for k, v in teacher.config.items() if k not in shared} != {
            k: v for k, v in self.net.config.items() if k not in shared
        }:
            raise ValueError(f"{path}: the teacher's network differs from the student's: {teacher.config}")
        self.net.load_state_dict(teacher.state_dict())
        self._teacher = [teacher.requires_grad_(False).eval()]
        log.info("stage 3 distils the guided %s teacher %s", teacher.objective, path)

    def distillation_terms(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond: dict) -> dict:
        """`flow_training_terms` of the student, its target the teacher's guided velocity (conditions never
        dropped: the guidance is folded into the student)."""
        teacher = self._teacher[0].to(x0.device)
        terms = flow_training_terms(lambda x_t, s: self.net(x_t, s, False, **cond), x0, noise, t)
        with torch.no_grad():
            guided = guided_denoiser(teacher, cond, self.hparams.distill_guidance)
            target = teacher_velocity(
                guided, terms["x_t"], t, teacher.objective, teacher.schedule, teacher.prediction
            )
        return terms | {"target": target.float()}

    def train(self, mode: bool = True) -> AudioToMotionModule:
        super().train(mode)
        self.motion.eval()  # BatchNorm statistics of the frozen model must not move
        return self

    # -- data -------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        made_by = getattr(datamodule, "motion_targets_source", lambda: None)()
        if made_by is not None and made_by["motion_ckpt_sha256"] != self.motion_ckpt_sha256:
            raise ValueError(
                f"{datamodule.motion_dir}: motion targets of stage 1 {made_by['motion_ckpt']} (sha256 "
                f"{made_by['motion_ckpt_sha256'][:12]}...), but this run's stage 1 is "
                f"{self.hparams.motion_ckpt} ({self.motion_ckpt_sha256[:12]}...)"
            )
        if hasattr(datamodule, "train_statistics"):
            stats = datamodule.train_statistics()
            if stage == "fit" and not bool(self.net.has_statistics):
                self.net.set_statistics(
                    stats["audio_features"]["mean"],
                    stats["audio_features"]["std"],
                    stats["pose"]["std"],
                    stats["blink"]["std"],
                )
            self.data_spec = datamodule.data_spec | {"mean_face_box": stats["face_box"]["mean"].tolist()}
        store_size = self.data_spec.get("frame_size")
        motion_size = None if store_size is None else round(store_size * self.motion.config["scale_factor"])
        if motion_size is not None and motion_size % self.net.spatial_factor:
            raise ValueError(
                f"frames of {store_size} px give {motion_size} px motion, not divisible by the U-Net's "
                f"{self.net.spatial_factor}: use fewer dim_mults or another size"
            )

    def on_fit_start(self) -> None:
        if not bool(self.net.has_motion_scale):
            self.net.set_motion_scale(self._training_motion_sample())
            log.info("motion scale (std of the residual per channel): %s", self.net.motion_scale.tolist())

    @torch.no_grad()
    def _training_motion_sample(self, clips: int = 16) -> torch.Tensor:
        """x0 of up to ``clips`` training clips, chosen deterministically (the same on every DDP rank)."""
        dataset = self.trainer.datamodule.make_dataset("train", train=False)
        picks = torch.linspace(0, len(dataset) - 1, min(clips, len(dataset))).round().long().unique()
        items = [dataset[int(i)] for i in picks]
        video = torch.stack([item["video"] for item in items]).to(self.device)
        reference = torch.stack([item["reference"] for item in items]).to(self.device)
        chunks = range(0, len(items), 4)
        return torch.cat([self.motion_x0(video[i : i + 4], reference[i : i + 4])[0] for i in chunks])

    @torch.no_grad()
    def motion_x0(
        self, video: torch.Tensor, reference: torch.Tensor, augment: SampleDraws | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, 3, F, S, S), reference (B, 3, S, S) in [0, 1] -> x0 (B, 3, F, S/4, S/4) of every frame
        against the reference, and z_src (B, C_z, S/4, S/4). With ``augment``, each clip (its reference and
        frames alike) first gets a colour jitter drawn from its sample's draws (the reference draws one per
        batch: per sample, a batch split over ranks is augmented as it is whole)."""
        if augment is not None and self.jitter is not None:
            video, reference = video.clone(), reference.clone()
            for i, seed in enumerate(augment.randint(2**62).tolist()):
                clip = torch.cat([reference[i, :, None], video[i]], dim=1)  # (3, 1 + F, S, S)
                with torch_rng_seeded(seed):
                    clip = self.jitter(rearrange(clip, "c f h w -> f c h w")).clamp(0, 1)
                reference[i], video[i] = clip[0], rearrange(clip[1:], "f c h w -> c f h w")
        return motion_targets(self.motion, video, reference)

    def inputs(self, batch: dict, augment: SampleDraws | None = None) -> dict[str, torch.Tensor]:
        if "x0" in batch:  # precomputed by this stage 1 (`data.motion_targets`, checked in `setup`)
            x0, z_src = batch["x0"], batch["z_src"]
        else:
            x0, z_src = self.motion_x0(batch["video"], batch["reference"], augment)
        x0 = self.net.normalise_motion(x0)
        cond = self.net.conditions(
            batch["audio"], batch["pose"], batch["blink"], batch["ref_pose"], batch["ref_blink"]
        )
        size = x0.shape[-1]
        boxes = rearrange(batch["mouth_box"], "b f k -> (b f) k")
        mouth = box_mask(boxes, size, self.hparams.lip_margin, cover=True)
        return {
            "x0": x0,
            "context": self.net.context(z_src, batch["ref_face_box"]),
            "mouth": rearrange(mouth, "(b f) 1 h w -> b 1 f h w", b=len(x0)),
            **cond,
        }

    # -- training ---------------------------------------------------------------------------------------
    def losses(self, inputs: dict, drop_prob: float, draws: SampleDraws | None = None) -> dict:
        """The loss terms of a batch, each a mean over its samples (so the mean over ranks of a split batch
        is the whole batch's). ``draws``: the samples' random draws (default: fresh from torch's RNG)."""
        x0 = inputs["x0"]
        cond = {k: inputs[k] for k in ("context", "audio", "pose", "blink")}
        b, _, f = x0.shape[:3]
        draws = SampleDraws.fresh(b, x0.device) if draws is None else draws
        drop = draws.rand(f) < drop_prob if drop_prob else False
        noise = draws.randn(*x0.shape[1:], dtype=x0.dtype)

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.net(x_t, t, drop, **cond)

        if self._teacher:
            terms = self.distillation_terms(x0, noise, logit_normal_times(draws.randn()), cond)
        elif self.net.objective == "flow":  # the velocity on the linear path, t logit-normal
            terms = flow_training_terms(denoise, x0, noise, logit_normal_times(draws.randn()))
        else:
            t = draws.randint(self.net.schedule.num_timesteps)
            terms = training_terms(denoise, self.net.schedule, x0, self.net.prediction, noise=noise, t=t)
        error = (terms["output"].float() - terms["target"]) ** 2
        mouth = inputs["mouth"].expand_as(error)
        dims = tuple(range(1, x0.ndim))
        low, high = x0.amin(dims, keepdim=True), x0.amax(dims, keepdim=True)  # each sample's range
        losses = {
            "denoise": error.mean(),
            "x0_mse": ((terms["x0_pred"].float().clamp(low, high) - x0) ** 2).mean(),
            # the mouth-masked error of each sample, averaged over the samples
            "lip": ((error * mouth).sum(dims) / mouth.sum(dims).clamp_min(1.0)).mean(),
        }
        h = self.hparams
        losses["loss"] = losses["denoise"] + h.flow_weight * losses["x0_mse"] + h.lip_weight * losses["lip"]
        return losses

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        size = len(batch["audio"])
        draws = SampleDraws.for_batch(batch, size, self.device)
        losses = self.losses(self.inputs(batch, augment=draws), self.hparams.cond_drop_prob, draws)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "loss"}, batch_size=size)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        return losses["loss"]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.float().norm() for g in grads])).all():
            for p in self.net.parameters():
                p.grad = None  # the optimiser leaves parameters without a gradient untouched
            self.skipped_steps += 1
            log.warning("step %d: non-finite gradients, step skipped", self.global_step)
        self.log("train/skipped_steps", self.skipped_steps.float())

    # -- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_index: int) -> None:
        inputs = self.inputs(batch)
        size = len(batch["video"])  # fixed draws: the same noise and steps every validation
        losses = self.losses(inputs, 0.0, SampleDraws(batch_index * size + torch.arange(size), self.device))
        self.log_dict(
            {f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch["video"]), sync_dist=True
        )
        if batch_index == 0 and self.hparams.num_val_videos:
            keep = slice(0, self.hparams.num_val_videos)
            self._val_batch = {
                "inputs": {k: v[keep] for k, v in inputs.items()},
                "video": batch["video"][keep],
                "reference": batch["reference"][keep],
                "speech": batch["speech"][keep] if "speech" in batch else None,  # validation clips' audio
            }

    def on_validation_epoch_end(self) -> None:
        self._val_batch = None

    def log_samples(self) -> Samples | None:
        """Motion sampled for the first validation clips (logged: ``val/sample_x0_mse`` against stage 1's),
        decoded and shown beside the truth (written by `LogSamples`)."""
        if self._val_batch is None or self.trainer.sanity_checking:
            return None
        inputs, video = self._val_batch["inputs"], self._val_batch["video"]
        generated_x0, true_x0 = self.sample(inputs, seed=0), self.net.denormalise_motion(inputs["x0"])
        self.log("val/sample_x0_mse", ((generated_x0 - true_x0) ** 2).mean(), sync_dist=True)
        frames = self.decode(self._val_batch["reference"], generated_x0)
        reconstructed = self.decode(self._val_batch["reference"], true_x0)
        return self._samples(video, reconstructed, frames, self._val_batch["speech"])

    def sample(self, inputs: dict, seed: int = 0) -> torch.Tensor:
        """Motion x0 (B, 3, F, h, w) sampled for a batch's conditions with the configured sampler."""
        s = self.sampler_settings
        sampler = sampler_from_settings(s, self.net.schedule, self.net.prediction)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return self.net.sample(
            sampler,
            inputs["context"],
            inputs["audio"],
            inputs["pose"],
            inputs["blink"],
            guidance_scale=s["guidance_scale"],
            dynamic_threshold=s["dynamic_threshold"],
            generator=generator,
            temporal_smoothing=s["temporal_smoothing"],
        )

    @torch.no_grad()
    def decode(self, reference: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """reference (B, 3, S, S), x0 (B, 3, F, h, w) -> frames (B, 3, F, S, S) in [0, 1]."""
        grid, occlusion = x0_to_motion(x0)
        f = x0.shape[2]
        sources = reference.repeat_interleave(f, 0)
        frames = self.motion.decode(sources, grid, occlusion, batch_size=64).clamp(0, 1)
        return rearrange(frames, "(b f) c h w -> b c f h w", f=f)

    @staticmethod
    def _samples(
        truth: torch.Tensor,
        reconstructed: torch.Tensor,
        generated: torch.Tensor,
        speech: torch.Tensor | None = None,
    ) -> Samples:
        """A grid image (rows: truth, stage-1 reconstruction, generated, per clip), and each clip (truth |
        generated side by side) as a video whose sound is the clip's ``speech`` (B, F * 640) if given."""
        videos = {}
        for i, (t, g) in enumerate(zip(truth, generated, strict=True)):
            pair = (rearrange(torch.cat([t, g], dim=-1), "c f h w -> f h w c") * 255).round().byte().cpu()
            audio = None if speech is None else speech[i].float().cpu().numpy()
            videos[f"clip{i}"] = VideoSample(f"val/clip{i}_truth|generated", pair.numpy(), audio)
        grid = clip_grid([truth, reconstructed, generated])
        return Samples(images={"val/truth|stage1_reconstruction|generated": grid}, videos=videos)

    # -- optimisation and checkpoints -------------------------------------------------------------------
    def configure_optimizers(self):
        return optimizer_with_schedule(
            self, self.net.parameters(), self.optimizer_factory, self.scheduler_factory
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        for key in WEIGHT_KEYS & checkpoint.keys():
            checkpoint[key] = {k: v for k, v in checkpoint[key].items() if not k.startswith(FROZEN_PREFIX)}
        record = {
            "config": self.net.config,
            "motion_ckpt": str(Path(self.hparams.motion_ckpt).resolve()),
            "motion_ckpt_sha256": self.motion_ckpt_sha256,
            "sampler": self.sampler_settings,
            **self.data_spec,
        }
        add_record(checkpoint, AUDIO_TO_MOTION, record)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        record = checkpoint.get(KEYS[AUDIO_TO_MOTION], {})
        self.data_spec = {
            k: record[k]
            for k in ("audio_features", "frame_size", "store_kind", "mean_face_box")
            if k in record
        }
        frozen = {k: v for k, v in self.state_dict().items() if k.startswith(FROZEN_PREFIX)}
        for key in WEIGHT_KEYS & checkpoint.keys():
            checkpoint[key].update(frozen)
