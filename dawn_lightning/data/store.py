"""The clip store: one on-disk format that preprocessing and the synthetic generator write, and every stage
reads; a store can also be packed into LitData chunks for streaming (`data.pack`).

Folder layout (DESIGN.md section 4)::

    <root>/store.json                 config and its hash, written first (a resume must use the same config)
    <root>/index.json                 header, split counts, training statistics, the fast checks' findings
    <root>/clips.npz                  the clip table: ids, lengths, splits, speakers (`clip_table`)
    <root>/clips/<clip_id>/frames.mp4 cropped frames at 25 fps, H.264 (or frames.npy, raw uint8 (T, S, S, 3))
    <root>/clips/<clip_id>/audio.wav  16 kHz mono float32
    <root>/clips/<clip_id>/signals.npz per-frame arrays, all of length T (see SIGNAL_DIMS)
    <root>/clips/<clip_id>/meta.json  the clip's record (speaker, source video, time span, crop)
    <root>/failed/<clip_id>.json      a clip that could not be made, with its reason

A packed store holds the same ``index.json`` and ``clips.npz`` beside ``chunks/`` (LitData), locally or at
an ``s3://`` / ``gs://`` address. Every write is atomic: a clip is assembled in a temporary folder and
renamed into place, so a folder under ``clips/`` is always complete, and a re-run skips it. Boxes are
(x0, y0, x1, y1) normalised to [0, 1] of the frame; pose is [yaw, pitch, roll (degrees), scale, tx, ty]
(normalised image coordinates); blink is the openness of the (left, right) eye, 1 = open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dawn_lightning import SAMPLE_RATE
from dawn_lightning.data.clip_table import SPLITS, ClipInfo, ClipList, ClipTable
from dawn_lightning.data.store_files import (
    StoreError,
    config_hash,
    is_remote,
    load_signals,
    read_bytes,
    read_json,
    write_json_atomic,
)
from dawn_lightning.data.video_io import VideoReader

FORMAT_VERSION = 2  # 2: the clip table in clips.npz, statistics and checks in the index
# Fixed per-frame signals and their widths; ``audio_features`` has the width the store's index records.
SIGNAL_DIMS = {"pose": 6, "blink": 2, "face_box": 4, "mouth_box": 4}
REQUIRED_SIGNALS = ("audio_features", *SIGNAL_DIMS)

__all__ = [
    "SPLITS",
    "ClipInfo",
    "ClipList",
    "ClipReader",
    "ClipRecord",
    "ClipStore",
    "StoreError",
    "config_hash",
    "load_signals",
    "read_json",
    "write_json_atomic",
]


@dataclass
class ClipRecord:
    """Everything one clip holds, in memory. ``signals`` maps a name to a (T, D) float32 array."""

    clip_id: str
    frames: np.ndarray  # uint8 (T, S, S, 3)
    audio: np.ndarray  # float32 (T * 640,)
    signals: dict[str, np.ndarray]
    split: str
    meta: dict = field(default_factory=dict)  # extra facts: identity, source video, time span, ...

    @property
    def num_frames(self) -> int:
        return len(self.frames)


class ClipReader:
    """Reads one clip of a folder store lazily: frames by index (decord random access), signals and audio on
    first use."""

    def __init__(self, clip_dir: Path, info: ClipInfo):
        self.dir = self.where = clip_dir
        self.info = info
        mp4 = clip_dir / "frames.mp4"
        self._video = VideoReader(mp4) if mp4.exists() else None
        self._signals: dict[str, np.ndarray] | None = None

    def frames(self, indices: Iterable[int]) -> np.ndarray:
        """uint8 (N, S, S, 3) frames at ``indices``."""
        indices = list(indices)
        if self._video is not None:
            try:
                return self._video.get(indices)
            except (OSError, IndexError) as error:  # truncated or corrupt: its message names the file
                raise StoreError(str(error)) from None
        path = self.dir / "frames.npy"
        try:
            return np.load(path, mmap_mode="r")[indices]
        except FileNotFoundError:
            raise StoreError(f"{self.dir}: no frames.mp4 or frames.npy") from None

    @property
    def signals(self) -> dict[str, np.ndarray]:
        """Per-frame arrays, each (T, D) float32."""
        if self._signals is None:
            self._signals = load_signals(self.dir / "signals.npz")
        return self._signals

    def audio(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The clip's 16 kHz mono waveform (T * 640,) float32, or its samples [start, stop) (read alone)."""
        import soundfile

        path = self.dir / "audio.wav"
        try:
            audio, rate = soundfile.read(str(path), dtype="float32", start=start, stop=stop)
        except RuntimeError as error:
            raise StoreError(f"{path}: unreadable ({error})") from None
        if rate != SAMPLE_RATE:
            raise StoreError(f"{path}: sample rate {rate}, the store needs {SAMPLE_RATE}")
        return audio

    def __getstate__(self):
        return self.__dict__ | {"_signals": None}


class ClipStore:
    """A store opened for reading: its index (header, statistics, checks), its clips by split, and readers.

    Opening reads ``index.json`` and the clip table and nothing per clip, so it takes the same time for a
    hundred clips as for a million."""

    def __init__(self, root: str | os.PathLike):
        self.root = str(root) if is_remote(root) else Path(root)
        if not is_remote(root) and not self.root.is_dir():
            raise StoreError(
                f"{self.root}: clip store not found (make one with `make data-synthetic` "
                f"or `dawn-preprocess`)"
            )
        where = f"{self.root}/index.json"
        try:
            self.index = json.loads(read_bytes(self.root, "index.json"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise StoreError(f"{where}: not valid JSON ({error})") from None
        version = self.index.get("format_version")
        if version != FORMAT_VERSION:
            rebuild = f"`dawn-store index {self.root}` rewrites it" if version == 1 else "rebuild the store"
            raise StoreError(
                f"{where}: format version {version}, this code reads version {FORMAT_VERSION} ({rebuild})"
            )
        self.packed = self.index.get("layout") == "packed"
        if is_remote(root) and not self.packed:
            raise StoreError(
                f"{root}: a folder store must be local; pack it (`dawn-store pack`) to stream it"
            )
        try:
            self.table = ClipTable.load(read_bytes(self.root, "clips.npz"))
        except (OSError, ValueError, KeyError) as error:
            raise StoreError(f"{self.root}/clips.npz: unreadable ({error})") from None
        self._pack = None

    @property
    def clips(self) -> ClipList:
        return self.table.rows()

    @property
    def frame_size(self) -> int:
        return int(self.index["frame_size"])

    @property
    def audio_dim(self) -> int:
        return int(self.index["signals"]["audio_features"])

    @property
    def kind(self) -> str:
        """ "synthetic" for the generator's stores, "real" for preprocessed videos."""
        return "synthetic" if (self.index.get("config") or {}).get("kind") == "synthetic" else "real"

    @property
    def audio_spec(self) -> dict:
        return dict(self.index["audio_features"])

    @property
    def statistics(self) -> dict[str, dict]:
        """{signal: {"frames", "mean", "std", "diff_std"}} over the training split, computed at the index."""
        return self.index["statistics"]["train"]

    @property
    def problems(self) -> list[str]:
        """What the fast checks found when the index was written (empty for a sound store)."""
        return list(self.index.get("problems", []))

    def split(self, name: str) -> ClipList:
        if name not in SPLITS:
            raise StoreError(f"split must be one of {SPLITS}, got {name!r}")
        return self.table.rows(name)

    def reader(self, info: ClipInfo):
        """A `ClipReader` (folder) or `PackedClipReader` (pack) of one clip."""
        if not self.packed:
            return ClipReader(self.root / "clips" / info.clip_id, info)
        from dawn_lightning.data.packed_reader import PackedClips

        if self._pack is None or not self._pack.usable():
            self._pack = PackedClips(self.root, self.index.get("chunks", "chunks"))
        return self._pack.reader(info)

    def __getstate__(self):
        return self.__dict__ | {"_pack": None}
