"""Writes the synthetic talking-head data set into a clip store, in parallel and resumably."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from dawn_lightning.data.store import ClipRecord, ClipStore
from dawn_lightning.data.store_writer import StoreWriter
from dawn_lightning.data.synthetic import make_clip, sample_identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    identity: int
    split: str
    seed: int
    num_frames: int


def plan_clips(
    seed: int, identities: dict[str, int], clips_per_identity: int, seconds: tuple[float, float]
) -> list[ClipJob]:
    """The clips of the data set, a pure function of the config: identities are numbered across splits in
    the order train, val, test, so each identity (and its face) belongs to exactly one split."""
    jobs, number = [], 0
    for split in ("train", "val", "test"):
        for _ in range(int(identities.get(split, 0))):
            for k in range(clips_per_identity):
                rng = np.random.default_rng([seed, 1, number, k])
                frames = int(round(rng.uniform(*seconds) * 25))
                clip_seed = int(rng.integers(2**31))
                jobs.append(ClipJob(f"id{number:04d}_{k:02d}", number, split, clip_seed, frames))
            number += 1
    return jobs


def _make_record(job: ClipJob, seed: int, size: int, features: Callable) -> ClipRecord:
    identity = sample_identity(np.random.default_rng([seed, 0, job.identity]))
    clip = make_clip(identity, job.seed, job.num_frames, size)
    signals = {
        "audio_features": features(clip.audio, job.num_frames),
        "pose": clip.pose,
        "blink": clip.blink,
        "face_box": clip.face_box,
        "mouth_box": clip.mouth_box,
    }
    meta = {"identity": f"id{job.identity:04d}", "source": "synthetic", "seed": job.seed}
    return ClipRecord(job.clip_id, clip.frames, clip.audio, signals, job.split, meta)


def _run_job(job: ClipJob, writer_args: dict, seed: int, features: Callable) -> tuple[str, str | None]:
    writer = StoreWriter(**writer_args)
    try:
        writer.write(_make_record(job, seed, writer_args["frame_size"], features))
        return job.clip_id, None
    except Exception as error:  # one bad clip is recorded and skipped, never fatal to the run
        reason = f"{type(error).__name__}: {error}"
        writer.fail(job.clip_id, reason)
        return job.clip_id, reason


def build_synthetic_store(
    store_dir: str | os.PathLike,
    frame_size: int,
    generator: dict,
    features: Callable,
    frames_format: str = "mp4",
    workers: int = 2,
) -> ClipStore:
    """Generate every missing clip of the synthetic data set and (re)write the index.

    ``generator`` holds seed, identities per split, clips_per_identity and seconds (min, max).
    """
    seconds = tuple(generator["seconds"])
    config = {
        "kind": "synthetic",
        "frame_size": frame_size,
        "generator": dict(generator, seconds=list(seconds)),
        "audio_features": features.spec,
        "frames_format": frames_format,
    }
    writer_args = {
        "root": str(store_dir),
        "config": config,
        "audio_spec": features.spec,
        "frame_size": frame_size,
        "frames_format": frames_format,
    }
    writer = StoreWriter(**writer_args)
    jobs = plan_clips(
        generator["seed"], dict(generator["identities"]), generator["clips_per_identity"], seconds
    )
    todo = [job for job in jobs if not writer.has(job.clip_id)]
    log.info("%s: %d clips planned, %d to make", store_dir, len(jobs), len(todo))
    start = time.perf_counter()
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            futures = [pool.submit(_run_job, job, writer_args, generator["seed"], features) for job in todo]
            results = [future.result() for future in as_completed(futures)]
    else:
        results = [_run_job(job, writer_args, generator["seed"], features) for job in todo]
    for clip_id, reason in results:
        if reason:
            log.error("clip %s failed and was skipped: %s", clip_id, reason)
    index = writer.finalize()
    log.info(
        "%s: %d clips (%s), %d failed, %.1f s",
        store_dir,
        index["num_clips"],
        index["splits"],
        len(index["failed"]),
        time.perf_counter() - start,
    )
    return ClipStore(store_dir)


def write_store_contact_sheet(store: ClipStore, path: Path, clips: int = 4, frames_per_clip: int = 8) -> None:
    """A PNG grid: one row per clip, frames evenly spaced over it, to look at what the store holds."""
    from dawn_lightning.data.contact_sheet import write_contact_sheet

    rows, labels = [], []
    for info in store.clips[:clips]:
        picks = np.linspace(0, info.num_frames - 1, frames_per_clip).round().astype(int)
        rows.append(store.reader(info).frames(picks))
        labels += [info.clip_id, *(f"t{p}" for p in picks[1:])]
    write_contact_sheet(np.concatenate(rows), path, columns=frames_per_clip, labels=labels)
