"""Validation samples in TensorBoard: each stage module says what to show, this callback writes it.

The latent-diffusion ``log_images`` pattern: at the end of every validation epoch `LogSamples` calls the
module's ``log_samples()``, which returns a `Samples` (images, figures, videos with their speech) built from
what the module kept of its validation batches. Images and figures go to the logger's TensorBoard writer;
videos go there as animated GIFs (TensorBoard's Images tab; ``add_video`` would need moviepy), their speech
beside them in the Audio tab (``<tag>/speech``: hear what the mouth should follow), and beside the logs as mp4
files with their sound (``<log_dir>/videos/step<step>_<name>.mp4``). Modules never touch the writer. A
logger without TensorBoard's calls (CSV) gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from dawn_lightning import SAMPLE_RATE


@dataclass
class VideoSample:
    """frames uint8 (T, H, W, 3) at 25 fps, and the speech they go with, 16 kHz (T * 640,) or None."""

    tag: str
    frames: np.ndarray
    speech: np.ndarray | None = None


@dataclass
class Samples:
    """What a module shows of one validation epoch: images (3, H, W) in [0, 1] and matplotlib figures by
    tag, videos by file name."""

    images: dict[str, torch.Tensor] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    videos: dict[str, VideoSample] = field(default_factory=dict)


class LogSamples(L.Callback):
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        make = getattr(pl_module, "log_samples", None)
        samples = make() if make is not None else None
        if samples is None:
            return
        experiment = getattr(trainer.logger, "experiment", None)
        step = trainer.global_step
        for tag, image in samples.images.items():
            if hasattr(experiment, "add_image"):
                experiment.add_image(tag, image, step)
        for tag, figure in samples.figures.items():
            if hasattr(experiment, "add_figure"):
                experiment.add_figure(tag, figure, step)
        if samples.videos and trainer.is_global_zero:
            self._write_videos(trainer, experiment, samples.videos, step)

    @staticmethod
    def _write_videos(trainer: L.Trainer, experiment, videos: dict[str, VideoSample], step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from dawn_lightning.data.video_io import write_mp4
        from dawn_lightning.training.visuals import video_summary

        if isinstance(experiment, SummaryWriter) and experiment.file_writer is not None:
            for video in videos.values():  # the writer's event file takes a prepared summary
                experiment.file_writer.add_summary(video_summary(video.tag, video.frames), step)
                if video.speech is not None:
                    speech = torch.from_numpy(np.clip(video.speech, -1, 1)).float()[None]
                    experiment.add_audio(f"{video.tag}/speech", speech, step, sample_rate=SAMPLE_RATE)
        log_dir = getattr(trainer.logger, "log_dir", None)
        if log_dir is None:
            return
        for name, video in videos.items():
            path = Path(log_dir) / "videos" / f"step{step:07d}_{name}.mp4"
            write_mp4(path, video.frames, audio=video.speech, pixel_format="yuv420p")
