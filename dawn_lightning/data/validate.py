"""Checks a clip store and names every problem by clip: missing files, length mismatches, wrong fps, NaN,
truncated or undecodable video.

The fast checks (files, shapes, NaN, audio length; no decoding) run once, when the index is written, and the
index records what they found, so a training process reads that record instead of every clip. `validate_store`
(`dawn-store validate`) is the full check, videos decoded, of a folder store or a pack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dawn_lightning.data.clip_table import ClipInfo
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.store_files import load_signals

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


def split_problems(counts: dict[str, int]) -> list[str]:
    """An empty index, or an empty split that training needs."""
    if not sum(counts.values()):
        return ["the index lists no clips"]
    return [
        f"split {split!r} has no clips, and training needs it ({why})"
        for split, why in TRAINING_SPLITS.items()
        if not counts.get(split)
    ]


def validate_store(root: str | os.PathLike, decode: bool = True) -> list[Problem]:
    """Every problem found in the store at ``root`` (empty when it is valid).

    ``decode=False`` skips opening videos (fast checks only: files, shapes, NaN, audio length).
    """
    try:
        store = ClipStore(root)
    except StoreError as error:
        return [Problem(None, str(error))]
    problems = [Problem(None, m) for m in split_problems({s: len(store.split(s)) for s in TRAINING_SPLITS})]
    if not store.packed:
        listed = {c.clip_id for c in store.clips}
        on_disk = {
            d.name for d in (store.root / "clips").iterdir() if d.is_dir() and not d.name.startswith(".")
        }
        problems += [
            Problem(c, "clip folder exists but is not in the index (run `dawn-store index` to rebuild it)")
            for c in sorted(on_disk - listed)
        ]
    for info in store.clips:
        problems += [Problem(info.clip_id, m) for m in check_clip(store, info, decode)]
    return problems


def check_clip(store: ClipStore, info: ClipInfo, decode: bool = True) -> list[str]:
    """Problems of one clip, as messages naming the file (or the pack's row)."""
    dims, size = store.index["signals"], store.frame_size
    if store.packed:
        reader = store.reader(info)
        try:
            messages = signal_problems(reader.where, reader.signals, dims, info.num_frames)
            messages += audio_problems(reader.where, len(reader.audio()), SAMPLE_RATE, 1, info.num_frames)
            if decode:
                messages += video_problems(reader.video(), reader.where, info.num_frames, size)
        except StoreError as error:
            return [str(error)]
        return messages
    clip_dir = store.root / "clips" / info.clip_id
    return folder_clip_problems(clip_dir, info.num_frames, dims, size, decode)[0]


def folder_clip_problems(
    clip_dir: Path, num_frames: int, dims: dict, size: int, decode: bool = False
) -> tuple[list[str], dict | None]:
    """Problems of one clip folder, and its signals (None when unreadable) for whoever needs them next."""
    if not clip_dir.is_dir():
        return [f"{clip_dir}: missing"], None
    messages = [f"{clip_dir / n}: missing" for n in ("meta.json", "audio.wav") if not (clip_dir / n).exists()]
    signals = None
    try:
        signals = load_signals(clip_dir / "signals.npz")
        messages += signal_problems(clip_dir / "signals.npz", signals, dims, num_frames)
    except StoreError as error:
        messages.append(str(error))
    if (clip_dir / "audio.wav").exists():
        messages += _wav_problems(clip_dir / "audio.wav", num_frames)
    messages += _frame_file_problems(clip_dir, num_frames, size, decode)
    return messages, signals


def signal_problems(where, signals: dict, dims: dict, num_frames: int) -> list[str]:
    messages = []
    for name, dim in dims.items():
        array = signals.get(name)
        if array is None:
            messages.append(f"{where}: signal {name!r} missing")
        elif array.shape != (num_frames, dim):
            messages.append(
                f"{where}: signal {name!r} has shape {array.shape}, the index says ({num_frames}, {dim})"
            )
        elif not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
            messages.append(
                f"{where}: signal {name!r} has NaN/inf at {len(bad)} frames (first: frame {bad[0]})"
            )
    return messages


def audio_problems(where, samples: int, rate: int, channels: int, num_frames: int) -> list[str]:
    messages = []
    if rate != SAMPLE_RATE or channels != 1:
        messages.append(f"{where}: {rate} Hz, {channels} channels; need {SAMPLE_RATE} Hz mono")
    if samples != num_frames * SAMPLES_PER_FRAME:
        messages.append(
            f"{where}: {samples} samples, {num_frames} frames need {num_frames * SAMPLES_PER_FRAME}"
        )
    return messages


def _wav_problems(path: Path, num_frames: int) -> list[str]:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except RuntimeError as error:
        return [f"{path}: unreadable ({error})"]
    return audio_problems(path, info.frames, info.samplerate, info.channels, num_frames)


def _frame_file_problems(clip_dir: Path, num_frames: int, size: int, decode: bool) -> list[str]:
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

    return video_problems(VideoReader(mp4), mp4, num_frames, size)


def video_problems(video, where, num_frames: int, size: int) -> list[str]:
    """Frame count, fps and frame size of a decoded video (a `VideoReader`, or frames already in memory)."""
    if isinstance(video, np.ndarray):
        shape = video.shape
        return (
            []
            if shape == (num_frames, size, size, 3)
            else [f"{where}: frames {shape}, need ({num_frames}, {size}, {size}, 3)"]
        )
    try:
        length, fps = len(video), video.fps
        messages = []
        if length != num_frames:
            messages.append(f"{where}: {length} frames, the index says {num_frames} (truncated?)")
        if abs(fps - FPS) > 1e-3:
            messages.append(f"{where}: {fps:g} fps, the store needs {FPS}")
        last = video.get([min(length, num_frames) - 1])
        if last.shape[1:] != (size, size, 3):
            messages.append(f"{where}: frames are {last.shape[1:]}, the store needs ({size}, {size}, 3)")
        return messages
    except (OSError, IndexError) as error:
        return [str(error)]
