"""Preprocessing spread over shards against one process, on real videos: ``shards`` `dawn-preprocess`
processes at once (one killed with SIGKILL mid-way, then run again), `dawn-store index`, and the single run's
store compared clip by clip (the same clips and splits, byte-identical signals, equal decoded frames)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dawn_lightning.data.preprocess.layout import find_videos
from dawn_lightning.data.preprocess.shards import shard_of
from dawn_lightning.data.store import ClipStore

EXTENSIONS = ("mp4", "mov", "mkv", "avi", "mpg")


def _command(input_dir: Path, out: Path, size: int, model: str, *extra: str) -> list[str]:
    script = Path(sys.executable).with_name("dawn-preprocess")
    settings = [f"input={input_dir}", f"output={out}", f"size={size}", f"face.model_path={model}"]
    return [str(script), *settings, "progress=false", *extra]


def default_input() -> str | None:
    """../shared/realdata (the real test clips) when it is there."""
    real = Path(__file__).resolve().parents[3] / "shared" / "realdata"
    return str(real) if real.is_dir() else None


def compare_stores(one: Path, many: Path) -> dict:
    """Clips, splits, signals (bytes) and decoded frames of two stores, side by side."""
    a, b = ClipStore(one), ClipStore(many)
    clips = [(c.clip_id, c.split, c.num_frames) for c in a.clips]
    same_clips = clips == [(c.clip_id, c.split, c.num_frames) for c in b.clips]
    differing_signals, differing_frames = [], []
    if same_clips:
        for info in a.clips:
            ours, theirs = a.reader(info), b.reader(info)
            if any(v.tobytes() != theirs.signals[k].tobytes() for k, v in ours.signals.items()):
                differing_signals.append(info.clip_id)
            frames = range(info.num_frames)
            if not np.array_equal(ours.frames(frames), theirs.frames(frames)):
                differing_frames.append(info.clip_id)
    return {
        "clips": len(clips),
        "same_clips_and_splits": same_clips,
        "clips_with_different_signals": differing_signals,
        "clips_with_different_frames": differing_frames,
    }


def shard_equivalence(input_dir: str, model: str, work: str, size: int = 128, shards: int = 3) -> dict:
    """The single run and the sharded run (all shards at once; the one with most videos killed after its
    first finished video and run again), timed, and their stores compared. ``work`` is emptied first."""
    input_dir, work = Path(input_dir).resolve(), Path(work)
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run(
        _command(input_dir, work / "single", size, model), env=env, check=False, capture_output=True
    )
    single_seconds = time.perf_counter() - started

    found = find_videos(input_dir, "generic", list(EXTENSIONS))
    owners = [shard_of(path.relative_to(input_dir), shards) for path, _, _ in found]
    victim = max(range(shards), key=owners.count)
    victim_ids = {video_id for (_, video_id, _), owner in zip(found, owners, strict=True) if owner == victim}
    sharded = work / "sharded"
    started = time.perf_counter()
    processes = {
        k: subprocess.Popen(
            _command(input_dir, sharded, size, model, f"shard={k}", f"num_shards={shards}"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for k in range(shards)
    }
    records = sharded / "videos"
    while processes[victim].poll() is None:
        done = {p.stem for p in records.glob("*.json")} if records.is_dir() else set()
        if done & victim_ids:
            processes[victim].send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    killed = processes[victim].wait() == -signal.SIGKILL
    for process in processes.values():
        process.wait()
    store_cli = [str(Path(sys.executable).with_name("dawn-store")), "index", str(sharded)]
    refused = subprocess.run(store_cli, capture_output=True, text=True)
    rerun = _command(input_dir, sharded, size, model, f"shard={victim}", f"num_shards={shards}")
    subprocess.run(rerun, env=env, check=False, capture_output=True)
    indexed = subprocess.run(store_cli, capture_output=True, text=True)
    sharded_seconds = time.perf_counter() - started
    return {
        "videos": len(found),
        "shards": shards,
        "size": size,
        "single_seconds": round(single_seconds, 1),
        "sharded_seconds": round(sharded_seconds, 1),
        "killed_shard": victim,
        "killed_with_sigkill": killed,
        "index_refused_while_unfinished": refused.returncode == 1 and f"shard {victim} of" in refused.stdout,
        "index_after_rerun_exit": indexed.returncode,
        **compare_stores(work / "single", sharded),
    }
