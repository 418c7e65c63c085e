"""A pose-only and a blink-only stage-2 generator used as one joint model (as the released DAWN has)."""

from __future__ import annotations

import os

import torch
from torch import nn

from dawn_lightning.checkpoints import load_pose_blink_generator
from dawn_lightning.models.audio_to_motion.motion_diffusion import POSE_DIM

BLINK_SEED_OFFSET = 1_000_003  # the blink model of a pose/blink pair draws its latents from seed + this


class PoseBlinkPair(nn.Module):
    """Two stage-2 generators used as one joint model: a pose-only (6) and a blink-only (2) one, as the
    released DAWN has. ``generate`` takes and returns joint normalised states (B, 8): pose, then blink."""

    def __init__(self, pose: nn.Module, blink: nn.Module):
        super().__init__()
        self.pose, self.blink = pose, blink
        self.config = {"audio_dim": pose.config["audio_dim"], "pose": pose.config, "blink": blink.config}

    @torch.no_grad()
    def generate(
        self, audio: torch.Tensor, init_state: torch.Tensor, temperature: float = 1.0, seed: int | None = None
    ) -> torch.Tensor:
        """audio (B, T, D), init_state (B, 8) -> states (B, T, 8)."""
        blink_seed = None if seed is None else seed + BLINK_SEED_OFFSET
        pose = self.pose.generate(audio, init_state[:, :POSE_DIM], temperature=temperature, seed=seed)
        blink = self.blink.generate(audio, init_state[:, POSE_DIM:], temperature=temperature, seed=blink_seed)
        return torch.cat([pose, blink], dim=-1)


def load_pose_blink_pair(
    pose_ckpt: str | os.PathLike, blink_ckpt: str | os.PathLike, ema: bool = True
) -> tuple[PoseBlinkPair, dict]:
    """A pose-only and a blink-only stage-2 checkpoint as one `PoseBlinkPair` and a joint record (``ema``: as
    `load_pose_blink_generator`)."""
    nets, records = {}, {}
    for signal, path in (("pose", pose_ckpt), ("blink", blink_ckpt)):
        nets[signal], records[signal] = load_pose_blink_generator(path, ema=ema)
        if records[signal]["signals"] != signal:
            raise ValueError(
                f"{path}: a stage-2 model of {records[signal]['signals']!r}, but checkpoints.{signal} needs "
                f"a {signal}-only one"
            )
    specs = [
        records[k]["audio_features"] for k in ("pose", "blink") if records[k]["audio_features"] is not None
    ]
    if len(specs) == 2 and dict(specs[0]) != dict(specs[1]):
        raise ValueError(
            f"the pose model {pose_ckpt} and the blink model {blink_ckpt} were trained on different audio "
            f"features: {dict(specs[0])} vs {dict(specs[1])}"
        )
    if nets["pose"].config["audio_dim"] != nets["blink"].config["audio_dim"]:
        raise ValueError(f"{pose_ckpt} and {blink_ckpt} take audio features of different widths")
    record = {
        "mean": torch.cat([records["pose"]["mean"], records["blink"]["mean"]]),
        "std": torch.cat([records["pose"]["std"], records["blink"]["std"]]),
        "signals": "both",
        "audio_features": specs[0] if specs else None,
    }
    return PoseBlinkPair(nets["pose"], nets["blink"]).eval(), record
