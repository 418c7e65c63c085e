"""Preprocessing benchmark: frames/s of one worker on real videos, by phase (decode, face analysis,
crop/resize/encode, audio features), for the default backend (MediaPipe) and log-mel features."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from dawn_lightning.config import CONF_DIR
from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.preprocess.face import make_backend
from dawn_lightning.data.preprocess.layout import VideoJob
from dawn_lightning.data.preprocess.run import PHASES, Settings, process_video
from dawn_lightning.data.store_writer import StoreWriter


def default_crop() -> dict:
    """The crop settings of ``conf/preprocess.yaml``, as `dawn-preprocess` uses them by default."""
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "preprocess.yaml").crop)


def worker_speed(videos: list[str], model_path: str | None, size: int = 256, threads: int = 1) -> dict:
    """Each video preprocessed once by one worker (``threads`` torch threads) into a temporary store."""
    import torch

    torch.set_num_threads(threads)
    features = LogMelFeatures()
    settings = Settings(
        size, {"backend": "mediapipe", "model_path": model_path, "min_confidence": 0.5}, default_crop()
    )
    backend = make_backend("mediapipe", model_path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = StoreWriter(tmp, {"kind": "bench"}, features.spec, size)
        features(np.zeros(640 * 25, np.float32), 25)  # librosa's first call compiles: not part of a video
        for path in videos:
            job = VideoJob(str(path), Path(path).stem, "bench", "train")
            start = time.perf_counter()
            result = process_video(job, writer, backend, features, settings)
            seconds = time.perf_counter() - start
            if result.status != "done":
                raise RuntimeError(f"{path}: {result.status} ({result.reason})")
            rows.append(
                {
                    "video": Path(path).name,
                    "frames": result.frames,
                    "seconds": seconds,
                    "fps": result.frames / seconds,
                    **{f"{p}_fps": result.frames / max(result.seconds[p], 1e-9) for p in PHASES},
                    **{f"{p}_share": result.seconds[p] / seconds for p in PHASES},
                }
            )
    backend.reset()
    return {"size": size, "threads": threads, "videos": rows}


def markdown(results: dict) -> str:
    lines = [
        f"| video | frames | frames/s (one worker, {results['size']} px) | "
        + " | ".join(f"{p} frames/s (share)" for p in PHASES)
        + " |",
        "|---" * (3 + len(PHASES)) + "|",
    ]
    for row in results["videos"]:
        phases = " | ".join(f"{row[f'{p}_fps']:.0f} ({row[f'{p}_share']:.0%})" for p in PHASES)
        lines.append(f"| {row['video']} | {row['frames']} | {row['fps']:.1f} | {phases} |")
    return "\n".join(lines)


def default_videos() -> list[str]:
    """An HDTF-style 512 px clip and a 1080p one from ../shared/realdata (the test clips)."""
    real = Path(__file__).resolve().parents[3] / "shared" / "realdata"
    videos = [
        real / "Real3DPortrait" / "data" / "raw" / "examples" / "May_5s.mp4",
        real / "EDTalk" / "test_data" / "uncrop_Obama.mp4",
        real / "EAMM" / "test" / "crop" / "M030_sad_3_001.mp4",
    ]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise FileNotFoundError(f"benchmark videos not found: {missing}; pass --videos")
    return [str(v) for v in videos]
