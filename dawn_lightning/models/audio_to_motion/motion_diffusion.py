"""Stage 3's generator: everything that turns a reference frame's encoding and per-frame conditions into a
motion sequence, without the frozen stage-1 model (training wraps it with that; inference too).

Motion x0 (B, 3, F, h, w) = cat(grid x, grid y, 2 * occlusion - 1) at h = w = S/4, the stage-1 model's
sampling grid (channels first) and occlusion map; both lie in [-1, 1].

What the diffusion runs on (``target``):
- "grid": x0 itself, as the reference (and its released weights). Most of x0's variance is the identity
  grid, the same in every clip (std 0.57 per channel), while the motion is a small residual (on the synthetic
  set: displacement std 0.01, its change over time 0.004; occlusion 0.97 +- 0.03): at most noise levels the
  network sees no motion at all, and learning it takes very long.
- "residual" (default): (x0 - identity) / motion_scale, where identity is the grid of no motion (pixel
  centres, as the stage-1 warp samples them) with occlusion 1, and motion_scale the per-channel std of that
  residual on training clips (fitted once, saved). The diffusion then runs on unit-variance motion, as
  latent diffusion scales its latents.

Conditions (B, F, .) are normalised with statistics of the training store that are saved with the weights:
audio features to zero mean and unit variance per channel, pose - pose_ref and blink - blink_ref divided
by the per-channel std of pose and blink (the reference feeds raw deltas: degrees next to unit-scale values).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from dawn_lightning.diffusion import FlowSampler, NoiseSchedule, Sampler, guided_denoiser
from dawn_lightning.diffusion.samplers import Progress
from dawn_lightning.diffusion.temporal_smoothing import smooth_over_time
from dawn_lightning.models.audio_to_motion.conditioning import FaceRegionEncoder
from dawn_lightning.models.audio_to_motion.unet3d import UNet3D
from dawn_lightning.tensors.boxes import box_mask

POSE_DIM, BLINK_DIM = 6, 2
TARGETS = ("residual", "grid")
# "diffusion": Gaussian diffusion on ``schedule`` predicting ``prediction``; "flow": flow matching on the
# linear path predicting the velocity (`diffusion.flow`; ``schedule`` and ``prediction`` unused)
OBJECTIVES = ("diffusion", "flow")


def identity_motion(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The x0 (3, h, w) of no motion: each pixel sampled at its own centre by `grid_sample`'s
    ``align_corners=False`` (the stage-1 warp), and occlusion 1 (2 * 1 - 1)."""
    y = (torch.arange(h, device=device, dtype=dtype) + 0.5) * (2 / h) - 1
    x = (torch.arange(w, device=device, dtype=dtype) + 0.5) * (2 / w) - 1
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy, torch.ones_like(xx)])


def motion_to_x0(grid: torch.Tensor, occlusion: torch.Tensor, batch: int) -> torch.Tensor:
    """grid (B*F, h, w, 2), occlusion (B*F, 1, h, w) in [0, 1] -> x0 (B, 3, F, h, w) in [-1, 1]."""
    x0 = torch.cat([rearrange(grid, "n h w c -> n c h w"), 2 * occlusion - 1], dim=1)
    return rearrange(x0, "(b f) c h w -> b c f h w", b=batch)


def x0_to_motion(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 (B, 3, F, h, w) -> grid (B*F, h, w, 2) and occlusion (B*F, 1, h, w) clamped to [0, 1]."""
    grid = rearrange(x0[:, :2], "b c f h w -> (b f) h w c")
    occlusion = rearrange((x0[:, 2:3] + 1) / 2, "b c f h w -> (b f) c h w").clamp(0, 1)
    return grid, occlusion


@torch.no_grad()
def motion_targets(
    motion: nn.Module, video: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 3's targets by the (frozen) stage-1 ``motion`` (a `MotionAutoencoder`): video (B, 3, F, S, S),
    reference (B, 3, S, S) in [0, 1] -> x0 (B, 3, F, S/4, S/4) of every frame against the reference, and
    z_src (B, C_z, S/4, S/4)."""
    b, _, f = video.shape[:3]
    frames = rearrange(video, "b c f h w -> (b f) c h w")
    regions = {k: v.repeat_interleave(f, 0) for k, v in motion.regions(reference).items()}
    sources = reference.repeat_interleave(f, 0)
    flow = motion.motion(sources, frames, source_regions=regions)
    return motion_to_x0(flow["grid"], flow["occlusion"], b), motion.encode(reference).z


class MotionDiffusion(nn.Module):
    """The A2V-FDM denoiser with its face-region encoder, condition normalisation and noise schedule.

    audio_dim: width of the store's audio features; z_channels: the stage-1 encoder's z_src channels.
    unet: keyword arguments of `UNet3D` except its input and condition widths, which follow from the above.
    ``forward(x_t, t, drop_cond, context, audio, pose, blink)`` is a `ConditionalDenoiser`: ``context`` is
    `context(...)`'s (B, C, h, w) reference features and audio/pose/blink come from `conditions(...)`.
    """

    audio_mean: torch.Tensor
    audio_std: torch.Tensor
    pose_scale: torch.Tensor
    blink_scale: torch.Tensor
    has_statistics: torch.Tensor
    motion_scale: torch.Tensor
    has_motion_scale: torch.Tensor

    def __init__(
        self,
        audio_dim: int,
        z_channels: int,
        unet: dict[str, Any] | None = None,
        face_channels: int = 16,
        face_hidden_channels: int = 8,
        schedule: str = "cosine",
        num_timesteps: int = 1000,
        prediction: str = "eps",
        target: str = "residual",
        objective: str = "diffusion",
    ):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        unet = dict(unet or {})
        self.config: dict[str, Any] = {
            "audio_dim": audio_dim,
            "z_channels": z_channels,
            "unet": unet,
            "face_channels": face_channels,
            "face_hidden_channels": face_hidden_channels,
            "schedule": schedule,
            "num_timesteps": num_timesteps,
            "prediction": prediction,
            "target": target,
            "objective": objective,
        }
        self.prediction, self.target, self.objective = prediction, target, objective
        self.face_encoder = FaceRegionEncoder(face_hidden_channels, face_channels)
        if "dim_mults" in unet:
            unet["dim_mults"] = tuple(unet["dim_mults"])
        self.unet = UNet3D(
            **unet,
            channels=3 + z_channels + face_channels,
            cond_audio=audio_dim,
            cond_pose=POSE_DIM,
            cond_blink=BLINK_DIM,
        )
        self.schedule = NoiseSchedule(schedule, num_timesteps)
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))
        self.register_buffer("pose_scale", torch.ones(POSE_DIM))
        self.register_buffer("blink_scale", torch.ones(BLINK_DIM))
        self.register_buffer("has_statistics", torch.tensor(False))
        self.register_buffer("motion_scale", torch.ones(3))
        self.register_buffer("has_motion_scale", torch.tensor(target == "grid"))

    @property
    def spatial_factor(self) -> int:
        """h and w must be multiples of this."""
        return 2**self.unet.num_downsamples

    def set_statistics(
        self,
        audio_mean: torch.Tensor,
        audio_std: torch.Tensor,
        pose_std: torch.Tensor,
        blink_std: torch.Tensor,
        eps: float = 1e-4,
    ) -> None:
        """Fits the condition normalisation to the training frames' per-channel statistics: audio mean and std
        (D,), pose std (6,), blink std (2,)."""
        self.audio_mean.copy_(audio_mean)
        self.audio_std.copy_(audio_std.clamp_min(eps))
        self.pose_scale.copy_(pose_std.clamp_min(eps))
        self.blink_scale.copy_(blink_std.clamp_min(eps))
        self.has_statistics.fill_(True)

    def motion_offset(self, x0: torch.Tensor) -> torch.Tensor:
        """What ``target`` subtracts from x0 (B, 3, F, h, w): the identity motion (1, 3, 1, h, w), or 0."""
        if self.target == "grid":
            return torch.zeros((), dtype=x0.dtype, device=x0.device)
        return identity_motion(*x0.shape[-2:], device=x0.device, dtype=x0.dtype)[None, :, None]

    def set_motion_scale(self, x0: torch.Tensor, eps: float = 1e-3) -> None:
        """Fits ``motion_scale`` to training motion x0 (B, 3, F, h, w) (for the residual target)."""
        residual = x0 - self.motion_offset(x0)
        self.motion_scale.copy_(residual.transpose(0, 1).reshape(3, -1).std(1).clamp_min(eps))
        self.has_motion_scale.fill_(True)

    def normalise_motion(self, x0: torch.Tensor) -> torch.Tensor:
        """Motion x0 (B, 3, F, h, w) -> what the diffusion runs on."""
        return (x0 - self.motion_offset(x0)) / self.motion_scale.view(1, 3, 1, 1, 1)

    def denormalise_motion(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.motion_scale.view(1, 3, 1, 1, 1) + self.motion_offset(z)

    def conditions(
        self,
        audio: torch.Tensor,
        pose: torch.Tensor,
        blink: torch.Tensor,
        ref_pose: torch.Tensor,
        ref_blink: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """audio (B, F, D), pose (B, F, 6), blink (B, F, 2), ref_pose (B, 6), ref_blink (B, 2) -> the
        network's normalised conditions {audio, pose, blink}, each (B, F, .)."""
        return {
            "audio": (audio - self.audio_mean) / self.audio_std,
            "pose": (pose - ref_pose[:, None]) / self.pose_scale,
            "blink": (blink - ref_blink[:, None]) / self.blink_scale,
        }

    def context(self, z_src: torch.Tensor, face_box: torch.Tensor) -> torch.Tensor:
        """z_src (B, C_z, h, w) of the reference frame and its face box (B, 4) (x0, y0, x1, y1 in [0, 1])
        -> the per-clip input features (B, C_z + face_channels, h, w)."""
        size = 4 * z_src.shape[-1]
        mask = box_mask(face_box.to(z_src.dtype), size, margin=0.0)
        return torch.cat([z_src, self.face_encoder(mask)], dim=1)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        drop_cond: bool | torch.Tensor = False,
        *,
        context: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        blink: torch.Tensor,
    ) -> torch.Tensor:
        """x_t (B, 3, F, h, w), t (B,), drop_cond a bool for all, or (B,) / (B, F) True where the conditions
        are replaced by the null condition -> the network output (B, 3, F, h, w)."""
        if isinstance(drop_cond, bool):
            drop_mask = torch.ones(len(x_t), dtype=torch.bool, device=x_t.device) if drop_cond else None
        else:
            drop_mask = drop_cond
        return self.unet(x_t, t, audio, pose, blink, drop_mask=drop_mask, static=context)

    @torch.no_grad()
    def sample(
        self,
        sampler: Sampler | FlowSampler,
        context: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        blink: torch.Tensor,
        guidance_scale: float = 1.0,
        dynamic_threshold: float | None = None,
        generator: torch.Generator | None = None,
        progress: Progress | None = None,
        temporal_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """All F frames of motion at once: x0 (B, 3, F, h, w) (grid and 2 * occlusion - 1) for normalised
        conditions (B, F, .). ``dynamic_threshold`` acts on the diffusion's variable (see ``target``).
        ``temporal_smoothing``: the sigma in frames of a Gaussian filter over time of the final sample
        (`smooth_over_time`; 0, DAWN's: none).

        ``guidance_scale`` 1 makes one network pass a step; otherwise classifier-free guidance batches the
        conditional and null passes. ``generator`` makes the draw reproducible (its device is x's).
        """
        if isinstance(sampler, FlowSampler) != (self.objective == "flow"):
            raise ValueError(
                f"a {type(sampler).__name__} cannot sample a network trained with objective "
                f"{self.objective!r} (sampler.name: flow_euler or flow_heun for flow, ddim, ddpm or "
                f"dpm_solver for diffusion)"
            )
        b, f = audio.shape[:2]
        h, w = context.shape[-2:]
        cond = {"context": context, "audio": audio, "pose": pose, "blink": blink}
        noise = torch.randn((b, 3, f, h, w), generator=generator, device=context.device, dtype=context.dtype)
        denoise = guided_denoiser(self, cond, guidance_scale)
        sample = sampler.sample(
            denoise,
            noise.shape,
            generator=generator,
            x_T=noise,
            dynamic_threshold=dynamic_threshold,
            progress=progress,
        )
        return self.denormalise_motion(smooth_over_time(sample, temporal_smoothing))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MotionDiffusion:
        return cls(**config)
