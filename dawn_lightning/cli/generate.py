"""`dawn-generate` (`make generate`): a portrait and a speech recording -> a talking-head mp4.

    dawn-generate portrait=face.png speech=speech.wav out=talk.mp4
    dawn-generate portrait=face.png speech=a.m4a out=a.mp4 checkpoints.diffusion=experiments/stage3a/latest

The settings are in conf/generate.yaml. A bad input (unreadable image, missing, undecodable, empty, silent or
too short speech, a pose/blink file of the wrong length, a portrait without a face when ``face.model_path`` is
set) stops with a message naming the file, and nothing is written at ``out``. HuBERT checkpoints (e.g. the
imported DAWN weights) need ``audio_features.model_path`` (or a bundle that carries HuBERT).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dawn_lightning.allocator import keep_freed_memory
from dawn_lightning.config import CONF_DIR

log = logging.getLogger("dawn_lightning.generate")
USAGE = "dawn-generate portrait=face.png speech=speech.wav out=talk.mp4"


def generate(cfg: DictConfig) -> Path:
    """Writes the video the config describes; returns its path."""
    from dawn_lightning.data.portrait import read_image
    from dawn_lightning.data.speech import load_speech
    from dawn_lightning.pipeline import DawnPipeline

    for key in ("portrait", "speech", "out"):
        if not cfg.get(key):
            raise ValueError(f"{key}=... is required: {USAGE}")
    check_output(Path(cfg.out), cfg.overwrite)
    # the inputs are read before the models load, so a bad file fails at once
    speech = load_speech(cfg.speech)
    read_image(cfg.portrait)  # read again by the pipeline, which names the file in its errors (no face, ...)
    pose_blink = None if cfg.pose_blink in (None, "generated") else cfg.pose_blink
    pipeline = DawnPipeline.from_config(cfg)
    video = pipeline(cfg.portrait, speech, seed=cfg.seed, pose_blink=pose_blink, progress=_progress())
    path = video.save(cfg.out)
    log.info("%s: %d frames (%.2f s) at %d fps", path, len(video), video.seconds, video.fps)
    return path


def check_output(out: Path, overwrite: bool) -> None:
    """Refuses an ``out`` that cannot be written before any work is done; says so when it replaces a file."""
    if out.is_dir():
        raise ValueError(f"out={out}: is a folder; name the mp4 to write, e.g. out={out / 'talk.mp4'}")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"out={out}: {parent} is a file, not a folder")
    if out.exists():
        if not overwrite:
            raise ValueError(f"out={out}: exists (overwrite=false): choose another name, or overwrite=true")
        log.warning("%s exists: overwriting it (overwrite=false refuses)", out)


def _progress():
    if not sys.stderr.isatty():
        return None
    from rich.progress import track

    return lambda steps: track(steps, description="sampling", transient=True)


@hydra.main(config_path=str(CONF_DIR), config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()
    try:
        generate(cfg)
    except (FileNotFoundError, ValueError, ImportError) as error:  # bad inputs, settings or a missing extra
        raise SystemExit(f"dawn-generate: error: {error}") from None
