"""One video end to end (decode, face track, clips, signals, write), and a whole run: in parallel over
videos, resumable, with a progress bar and a summary of what was done, skipped and failed, and why.

Resuming: a video is finished once ``<store>/videos/<video_id>.json`` records it (done, or skipped with
its reason); a re-run skips it if all its clips are there, and otherwise redoes it, keeping the clips that
are complete (a clip folder only exists once complete). The store refuses a run with another config.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLES_PER_FRAME
from dawn_lightning.data.preprocess.crop import crop_resize, plan_clips, scene_cuts, thumbnail
from dawn_lightning.data.preprocess.decode import NoAudioError, SourceVideo, open_video
from dawn_lightning.data.preprocess.face import FaceBackend, make_backend
from dawn_lightning.data.preprocess.layout import VideoJob, assign_splits, find_videos
from dawn_lightning.data.preprocess.shards import finish_shard, shard_of, start_shard
from dawn_lightning.data.preprocess.signals import FaceTrack, clip_signals
from dawn_lightning.data.store import ClipRecord, read_json, write_json_atomic
from dawn_lightning.data.store_writer import StoreWriter, build_index

log = logging.getLogger(__name__)
PHASES = ("decode", "face", "crop_encode", "audio_features")


class PreprocessError(ValueError):
    """The run cannot start (no videos, bad settings); the message says what to change."""


@dataclass
class VideoResult:
    video_id: str
    path: str
    status: str  # done | skipped | failed
    reason: str = ""
    clips: list[str] = field(default_factory=list)
    frames: int = 0  # output frames (25 fps) analysed
    clip_frames: int = 0  # frames written into clips
    dropped: int = 0  # clips shorter than the minimum
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))


@dataclass(frozen=True)
class Settings:
    """What a video is turned into (all of it is in the store's config hash but ``model_path`` and
    ``verbose``)."""

    size: int
    face: dict  # backend, model_path, min_confidence, verbose
    crop: dict  # margin, min_seconds, max_seconds, smooth_frames, max_zoom, scene_cut
    chunk_frames: int = 64
    keep_mb: float = 1024  # a video whose 25 fps frames fit in this is decoded once, not twice


class _Clock:
    def __init__(self, seconds: dict):
        self.seconds, self.phase = seconds, None

    def __call__(self, phase: str):
        self.phase = phase
        return self

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.phase] += time.perf_counter() - self.start


def analyse(source: SourceVideo, backend: FaceBackend, settings: Settings, clock: _Clock):
    """(face track, thumbnails) of every output frame, reading the video once in chunks."""
    faces, thumbs = [], []
    backend.reset()
    chunks = source.chunks(settings.chunk_frames, settings.keep_mb)
    while True:
        with clock("decode"):
            start, frames = next(chunks, (None, None))
        if frames is None:
            break
        thumbs.append(thumbnail(frames))  # for scene cuts
        with clock("face"):
            faces += [backend.analyze(frame, (start + i) * 1000 // FPS) for i, frame in enumerate(frames)]
    backend.reset()
    return FaceTrack.from_faces(faces, backend.num_landmarks), np.concatenate(thumbs)


def process_video(
    job: VideoJob, writer: StoreWriter, backend: FaceBackend, features, settings: Settings
) -> VideoResult:
    """Make every clip of one video (skipping clips already in the store); never raises for a bad video."""
    result = VideoResult(job.video_id, job.path, "done")
    clock = _Clock(result.seconds)
    try:
        with clock("decode"):
            source = open_video(job.path)
        result.frames = source.num_frames
        track, thumbs = analyse(source, backend, settings, clock)
        crop = settings.crop
        plans, result.dropped = plan_clips(
            track.box,
            scene_cuts(thumbs, crop["scene_cut"]),
            margin=crop["margin"],
            min_frames=int(round(crop["min_seconds"] * FPS)),
            max_frames=int(round(crop["max_seconds"] * FPS)),
            smooth_frames=crop["smooth_frames"],
            max_zoom=crop["max_zoom"],
        )
        if not np.isfinite(track.box).all(axis=1).any():
            result.status, result.reason = "skipped", "no face found in any frame"
        elif not plans:
            result.status = "skipped"
            result.reason = f"no clip of at least {crop['min_seconds']} s with a steady face"
        for k, plan in enumerate(plans):
            clip_id = f"{job.video_id}_{k:03d}"
            result.clips.append(clip_id)
            result.clip_frames += plan.num_frames
            if not writer.has(clip_id):
                record = _make_clip(clip_id, job, source, track, plan, features, settings, clock)
                with clock("crop_encode"):
                    writer.write(record)
    except NoAudioError as error:
        result.status, result.reason = "skipped", str(error)
    except Exception as error:  # one bad video is reported with its path and reason, never fatal to the run
        result.status, result.reason = "failed", f"{type(error).__name__}: {error}"
        writer.fail(
            job.video_id, result.reason if job.path in result.reason else f"{job.path}: {result.reason}"
        )
        return result
    (writer.root / "failed" / f"{job.video_id}.json").unlink(missing_ok=True)
    (writer.root / "videos").mkdir(exist_ok=True)
    write_json_atomic(writer.root / "videos" / f"{job.video_id}.json", asdict(result))
    return result


def _make_clip(clip_id, job, source, track, plan, features, settings, clock) -> ClipRecord:
    pieces = []
    for start in range(plan.start, plan.stop, settings.chunk_frames):
        with clock("decode"):
            frames = source.frames(start, min(start + settings.chunk_frames, plan.stop))
        with clock("crop_encode"):
            pieces.append(crop_resize(frames, plan.crop, settings.size))
    audio = source.audio[plan.start * SAMPLES_PER_FRAME : plan.stop * SAMPLES_PER_FRAME]
    with clock("audio_features"):
        signals = clip_signals(track, plan, settings.crop["smooth_frames"])
        signals["audio_features"] = features(audio, plan.num_frames)
    meta = {
        "identity": job.speaker,
        "source": job.path,
        "video_id": job.video_id,
        "start_frame": plan.start,
        "crop": [round(float(v), 2) for v in plan.crop],
    }
    return ClipRecord(clip_id, np.concatenate(pieces), audio, signals, job.split, meta)


def _is_finished(root: Path, video_id: str) -> bool:
    record = root / "videos" / f"{video_id}.json"
    if not record.exists():
        return False
    clips = read_json(record)["clips"]
    return all((root / "clips" / c).is_dir() for c in clips)


_WORKER: dict = {}


def _start_worker(writer_args: dict, face: dict) -> None:
    """A pool process's own backend and writer (a MediaPipe landmarker cannot be pickled or shared)."""
    import torch

    torch.set_num_threads(1)
    _WORKER["backend"] = make_backend(
        face["backend"], face["model_path"], face["min_confidence"], face.get("verbose", False)
    )
    _WORKER["writer"] = StoreWriter(**writer_args)


def _run_in_worker(job: VideoJob, features, settings: Settings) -> VideoResult:
    return process_video(job, _WORKER["writer"], _WORKER["backend"], features, settings)


@dataclass
class Summary:
    """What a run did: one result per video (done, skipped or failed), and the store's index."""

    results: list[VideoResult]
    index: dict | None  # None for a dry run
    seconds: float = 0.0

    def by_status(self, status: str) -> list[VideoResult]:
        return [r for r in self.results if r.status == status]

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self.results)

    def as_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "videos": {s: len(self.by_status(s)) for s in ("done", "skipped", "failed", "finished", "todo")},
            "clips": self.index["num_clips"] if self.index else 0,
            "dropped_short_clips": self.dropped,
            "skipped": {r.path: r.reason for r in self.by_status("skipped")},
            "failed": {r.path: r.reason for r in self.by_status("failed")},
        }


def plan_jobs(
    input_dir, layout: str, extensions: list[str], split: dict, shard: int = 0, num_shards: int = 1
) -> list[VideoJob]:
    """Every video under ``input_dir`` of shard ``shard`` (`shards.shard_of`) with its speaker and a
    provisional split (the index assigns the splits from the speakers whose videos gave clips);
    PreprocessError when there are none."""
    found = find_videos(input_dir, layout, extensions)
    if not found:
        raise PreprocessError(
            f"{input_dir}: no videos ({', '.join(extensions)}) found for layout {layout!r}; nothing to do"
        )
    ids = Counter(video_id for _, video_id, _ in found)
    if any(n > 1 for n in ids.values()):
        raise PreprocessError(f"{input_dir}: video ids collide: {[i for i, n in ids.items() if n > 1]}")
    splits = speaker_splits(sorted({s for _, _, s in found}), split)  # provisional: final at the index
    return [
        VideoJob(str(path), video_id, speaker, splits[speaker])
        for path, video_id, speaker in found
        if shard_of(path.relative_to(input_dir), num_shards) == shard
    ]


def speaker_splits(speakers: list[str], split: dict) -> dict[str, str]:
    """speaker -> split by the run's ``split`` settings (fractions, seed, speaker lists)."""
    lists = {"val": split.get("val_list"), "test": split.get("test_list")}
    return assign_splits(speakers, split["seed"], split["val"], split["test"], lists)


def preprocess(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: dict,
    features,
    settings: Settings,
    workers: int = 1,
    dry_run: bool = False,
    progress: bool = True,
    shard: int = 0,
    num_shards: int = 1,
) -> Summary:
    """Turn every video under ``input_dir`` into clips of the store at ``output_dir`` (see the module doc).

    ``config`` is what the store records and hashes: layout, extensions, split and ``settings`` as set.
    With ``num_shards`` > 1 this process does the videos of ``shard`` only (`shards`), writes its summary
    under ``summaries/`` and leaves the index to `dawn-store index`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    root = Path(output_dir)
    if not 0 <= shard < num_shards:
        raise PreprocessError(f"shard={shard} outside 0..{num_shards - 1} (num_shards={num_shards})")
    jobs = plan_jobs(input_dir, config["layout"], config["extensions"], config["split"], shard, num_shards)
    if dry_run:
        results = [
            VideoResult(
                j.video_id,
                j.path,
                "finished" if _is_finished(root, j.video_id) else "todo",
                reason=f"speaker {j.speaker}, split {j.split}",
            )
            for j in jobs
        ]
        return Summary(results, None, time.perf_counter() - started)
    face = settings.face
    # bad settings stop here
    backend = make_backend(
        face["backend"], face["model_path"], face["min_confidence"], face.get("verbose", False)
    )
    writer_args = {
        "root": str(root),
        "config": config,
        "audio_spec": features.spec,
        "frame_size": settings.size,
    }
    writer = StoreWriter(**writer_args)
    mine = {j.video_id for j in jobs}
    for stale in (root / "clips").glob(".*.tmp"):  # a clip a killed run of this shard left half-written
        if stale.name[1:].split(".")[0].rsplit("_", 1)[0] in mine:
            shutil.rmtree(stale, ignore_errors=True)
    if num_shards > 1:
        start_shard(root, shard, num_shards, len(jobs))
    todo = [j for j in jobs if not _is_finished(root, j.video_id)]
    results = [VideoResult(j.video_id, j.path, "finished") for j in jobs if _is_finished(root, j.video_id)]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("preprocess", total=len(todo), rate="")
        videos = frames = 0
        for result in _results(todo, backend, writer, writer_args, features, settings, workers):
            results.append(result)
            videos, frames = videos + 1, frames + result.frames
            elapsed = time.perf_counter() - started
            bar.update(
                task, advance=1, rate=f"{videos / elapsed:.2f} videos/s, {frames / elapsed:.0f} frames/s"
            )
            if result.status != "done":
                log.warning("%s %s: %s", result.status, result.path, result.reason)
    if num_shards > 1:  # the index waits for every shard (`dawn-store index`)
        summary = Summary(results, None, time.perf_counter() - started)
        (root / "summaries").mkdir(exist_ok=True)
        write_json_atomic(
            root / "summaries" / f"shard-{shard:05d}-of-{num_shards:05d}.json", summary.as_dict()
        )
        finish_shard(root, shard, num_shards, summary.as_dict()["videos"])
        return summary
    index = build_index(root, lambda speakers: speaker_splits(speakers, config["split"]))
    summary = Summary(results, index, time.perf_counter() - started)
    write_json_atomic(root / "summary.json", summary.as_dict())
    return summary


def _results(todo, backend, writer, writer_args, features, settings, workers):
    if workers > 1 and len(todo) > 1:
        context = get_context("fork")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(writer_args, settings.face)
        ) as pool:
            futures = [pool.submit(_run_in_worker, job, features, settings) for job in todo]
            for future in as_completed(futures):
                yield future.result()
    else:
        for job in todo:
            yield process_video(job, writer, backend, features, settings)
