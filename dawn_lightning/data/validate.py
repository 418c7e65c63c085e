"""Checks a clip store and names every problem by clip: missing files, length mismatches, wrong fps, NaN,
truncated or undecodable video. Used by `dawn-store validate`, by the data modules' setup, and in tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dawn_lightning.data.store import ClipInfo, ClipStore, StoreError

TRAINING_SPLITS = {
    "train": "the stages learn from it",
    "val": "every stage validates on it; preprocessing gives it speakers by split.val or split.val_list",
}


@dataclass(frozen=True)
class Problem:
    clip_id: str | None  # None: the store itself
    message: str

    def __str__(self) -> str:
        return f"{self.clip_id or 'store'}: {self.message}"


def validate_store(root: str | os.PathLike, decode: bool = True) -> list[Problem]:
    """Every problem found in the store at ``root`` (empty when it is valid).

    ``decode=False`` skips opening videos (fast checks only: files, shapes, NaN, audio length).
    """
    try:
        store = ClipStore(root)
    except StoreError as error:
        return [Problem(None, str(error))]
    problems = []
    if not store.clips:
        problems.append(Problem(None, f"{store.root}: the index lists no clips"))
    else:
        problems += [
            Problem(None, f"split {split!r} has no clips, and training needs it ({TRAINING_SPLITS[split]})")
            for split in TRAINING_SPLITS
            if not store.split(split)
        ]
    listed = {c.clip_id for c in store.clips}
    on_disk = {d.name for d in (store.root / "clips").iterdir() if d.is_dir() and not d.name.startswith(".")}
    problems += [
        Problem(c, "clip folder exists but is not in index.json (re-run to rebuild the index)")
        for c in sorted(on_disk - listed)
    ]
    for info in store.clips:
        problems += [Problem(info.clip_id, m) for m in check_clip(store, info, decode)]
    return problems


def check_clip(store: ClipStore, info: ClipInfo, decode: bool = True) -> list[str]:
    """Problems of one clip, as messages naming the file."""
    clip_dir = store.root / "clips" / info.clip_id
    if not clip_dir.is_dir():
        return [f"{clip_dir}: missing"]
    messages = []
    for name in ("meta.json", "audio.wav", "signals.npz"):
        if not (clip_dir / name).exists():
            messages.append(f"{clip_dir / name}: missing")
    reader = store.reader(info)
    if (clip_dir / "signals.npz").exists():
        messages += _check_signals(reader, store.index["signals"], info.num_frames)
    if (clip_dir / "audio.wav").exists():
        messages += _check_audio(clip_dir / "audio.wav", info.num_frames)
    messages += _check_frames(clip_dir, info.num_frames, store.frame_size, decode)
    return messages


def _check_signals(reader, dims: dict, num_frames: int) -> list[str]:
    path = reader.dir / "signals.npz"
    try:
        signals = reader.signals
    except StoreError as error:
        return [str(error)]
    messages = []
    for name, dim in dims.items():
        array = signals.get(name)
        if array is None:
            messages.append(f"{path}: signal {name!r} missing")
        elif array.shape != (num_frames, dim):
            messages.append(
                f"{path}: signal {name!r} has shape {array.shape}, the index says ({num_frames}, {dim})"
            )
        elif not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
            messages.append(
                f"{path}: signal {name!r} has NaN/inf at {len(bad)} frames (first: frame {bad[0]})"
            )
    return messages


def _check_audio(path: Path, num_frames: int) -> list[str]:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except RuntimeError as error:
        return [f"{path}: unreadable ({error})"]
    messages = []
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        messages.append(f"{path}: {info.samplerate} Hz, {info.channels} channels; need {SAMPLE_RATE} Hz mono")
    if info.frames != num_frames * SAMPLES_PER_FRAME:
        messages.append(
            f"{path}: {info.frames} samples, {num_frames} frames need {num_frames * SAMPLES_PER_FRAME}"
        )
    return messages


def _check_frames(clip_dir: Path, num_frames: int, size: int, decode: bool) -> list[str]:
    mp4, npy = clip_dir / "frames.mp4", clip_dir / "frames.npy"
    if npy.exists():
        try:
            shape = np.load(npy, mmap_mode="r").shape
        except (OSError, ValueError) as error:
            return [f"{npy}: unreadable ({error})"]
        return (
            []
            if shape == (num_frames, size, size, 3)
            else [f"{npy}: shape {shape}, the index says ({num_frames}, {size}, {size}, 3)"]
        )
    if not mp4.exists():
        return [f"{clip_dir}: no frames.mp4 or frames.npy"]
    if not decode:
        return []
    from dawn_lightning.data.video_io import VideoReader

    video = VideoReader(mp4)
    try:
        length, fps = len(video), video.fps
        messages = []
        if length != num_frames:
            messages.append(f"{mp4}: {length} frames, the index says {num_frames} (truncated?)")
        if abs(fps - FPS) > 1e-3:
            messages.append(f"{mp4}: {fps:g} fps, the store needs {FPS}")
        last = video.get([min(length, num_frames) - 1])
        if last.shape[1:] != (size, size, 3):
            messages.append(f"{mp4}: frames are {last.shape[1:]}, the store needs ({size}, {size}, 3)")
        return messages
    except (OSError, IndexError) as error:
        return [str(error)]
