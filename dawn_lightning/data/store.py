"""The clip store: one on-disk format that preprocessing and the synthetic generator write, and every stage
reads.

Layout (DESIGN.md section 4)::

    <root>/store.json                 config and its hash, written first (a resume must use the same config)
    <root>/index.json                 clip ids, lengths, splits, signal kinds and dimensions, version
    <root>/clips/<clip_id>/frames.mp4 cropped frames at 25 fps, H.264 (or frames.npy, raw uint8 (T, S, S, 3))
    <root>/clips/<clip_id>/audio.wav  16 kHz mono float32
    <root>/clips/<clip_id>/signals.npz per-frame arrays, all of length T (see SIGNAL_DIMS)
    <root>/clips/<clip_id>/meta.json  the clip's index entry
    <root>/failed/<clip_id>.json      a clip that could not be made, with its reason

Every write is atomic: a clip is assembled in a temporary folder and renamed into place, so a folder under
``clips/`` is always complete, and a re-run skips it. Boxes are (x0, y0, x1, y1) normalised to [0, 1] of the
frame; pose is [yaw, pitch, roll (degrees), scale, tx, ty] (normalised image coordinates); blink is the
openness of the (left, right) eye, 1 = open.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, __version__
from dawn_lightning.data.video_io import VideoReader, write_mp4

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
# Fixed per-frame signals and their widths; ``audio_features`` has the width the store's index records.
SIGNAL_DIMS = {"pose": 6, "blink": 2, "face_box": 4, "mouth_box": 4}
REQUIRED_SIGNALS = ("audio_features", *SIGNAL_DIMS)


class StoreError(ValueError):
    """A clip store, or a clip in it, is missing, malformed or inconsistent. The message names the path."""


def config_hash(config: dict) -> str:
    """A short, stable hash of a JSON-serialisable config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{path}: not valid JSON ({error})") from None


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


@dataclass(frozen=True)
class ClipInfo:
    """One clip's entry in the index."""

    clip_id: str
    num_frames: int
    split: str
    meta: dict

    @property
    def group(self) -> str:
        """The identity (speaker) of the clip: stage 3 in mode B draws references within it."""
        return str(self.meta.get("identity", self.clip_id))


class StoreWriter:
    """Writes clips into a store, atomically and resumably.

    ``config`` is the generating (or preprocessing) config; its hash is saved first and a re-run with a
    different config is refused, so one store never mixes clips made two ways.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        config: dict,
        audio_spec: dict,
        frame_size: int,
        frames_format: str = "mp4",
    ):
        if frames_format not in ("mp4", "npy"):
            raise ValueError(f"frames_format must be 'mp4' or 'npy', got {frames_format!r}")
        self.root = Path(root)
        self.frames_format = frames_format
        self.header = {
            "format_version": FORMAT_VERSION,
            "project_version": __version__,
            "config": config,
            "config_hash": config_hash(config),
            "fps": FPS,
            "sample_rate": SAMPLE_RATE,
            "frame_size": frame_size,
            "frames_format": frames_format,
            "audio_features": audio_spec,
            "signals": {"audio_features": audio_spec["dim"], **SIGNAL_DIMS},
        }
        (self.root / "clips").mkdir(parents=True, exist_ok=True)
        (self.root / "failed").mkdir(exist_ok=True)
        header_path = self.root / "store.json"
        if header_path.exists():
            existing = read_json(header_path)
            if existing.get("config_hash") != self.header["config_hash"]:
                raise StoreError(
                    f"{header_path}: this store was made with another config "
                    f"(hash {existing.get('config_hash')},"
                    f" now {self.header['config_hash']}); write to a new folder or delete this one"
                )
        else:
            write_json_atomic(header_path, self.header)

    def clip_dir(self, clip_id: str) -> Path:
        return self.root / "clips" / clip_id

    def has(self, clip_id: str) -> bool:
        """True when the clip is complete (its folder exists only after an atomic rename)."""
        return self.clip_dir(clip_id).is_dir()

    def write(self, clip: ClipRecord) -> None:
        self._check(clip)
        final = self.clip_dir(clip.clip_id)
        tmp = final.with_name(f".{clip.clip_id}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            if self.frames_format == "mp4":
                write_mp4(tmp / "frames.mp4", clip.frames)
            else:
                np.save(tmp / "frames.npy", clip.frames)
            _write_wav(tmp / "audio.wav", clip.audio)
            np.savez(tmp / "signals.npz", **{k: np.asarray(v, np.float32) for k, v in clip.signals.items()})
            meta = {"clip_id": clip.clip_id, "num_frames": clip.num_frames, "split": clip.split, **clip.meta}
            write_json_atomic(tmp / "meta.json", meta)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (self.root / "failed" / f"{clip.clip_id}.json").unlink(missing_ok=True)

    def fail(self, clip_id: str, reason: str) -> None:
        """Record that ``clip_id`` could not be made; the run goes on."""
        write_json_atomic(self.root / "failed" / f"{clip_id}.json", {"clip_id": clip_id, "reason": reason})

    def finalize(self, splits: Callable[[list[str]], dict[str, str]] | None = None) -> dict:
        """Write ``index.json`` from the complete clips and recorded failures; returns the index.

        ``splits``: identities -> {identity: split}, called with the identities that have clips, so a split
        is made from speakers that produced clips (not from videos that later failed); a clip whose split
        changes has its meta.json rewritten."""
        folders = [d for d in (self.root / "clips").iterdir() if d.is_dir() and not d.name.startswith(".")]
        clips = sorted((read_json(d / "meta.json") for d in folders), key=lambda m: m["clip_id"])
        if splits is not None:
            chosen = splits(sorted({c["identity"] for c in clips}))
            for clip in clips:
                if clip["split"] != chosen[clip["identity"]]:
                    clip["split"] = chosen[clip["identity"]]
                    write_json_atomic(self.root / "clips" / clip["clip_id"] / "meta.json", clip)
        failed = sorted(
            (read_json(p) for p in (self.root / "failed").glob("*.json")), key=lambda m: m["clip_id"]
        )
        index = self.header | {
            "clips": clips,
            "failed": failed,
            "splits": {s: sum(c["split"] == s for c in clips) for s in SPLITS},
            "total_frames": sum(c["num_frames"] for c in clips),
        }
        write_json_atomic(self.root / "index.json", index)
        return index

    def _check(self, clip: ClipRecord) -> None:
        where = f"clip {clip.clip_id}"
        if clip.split not in SPLITS:
            raise StoreError(f"{where}: split must be one of {SPLITS}, got {clip.split!r}")
        size = self.header["frame_size"]
        if clip.frames.dtype != np.uint8 or clip.frames.shape[1:] != (size, size, 3):
            raise StoreError(
                f"{where}: frames must be uint8 (T, {size}, {size}, 3), got {clip.frames.dtype} "
                f"{clip.frames.shape}"
            )
        if len(clip.audio) != clip.num_frames * SAMPLES_PER_FRAME:
            raise StoreError(
                f"{where}: {len(clip.audio)} audio samples for {clip.num_frames} frames "
                f"(need {clip.num_frames * SAMPLES_PER_FRAME})"
            )
        for name, dim in self.header["signals"].items():
            array = clip.signals.get(name)
            if array is None:
                raise StoreError(f"{where}: signal {name!r} missing")
            if array.shape != (clip.num_frames, dim):
                raise StoreError(
                    f"{where}: signal {name!r} has shape {array.shape}, need ({clip.num_frames}, {dim})"
                )


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile

    soundfile.write(str(path), np.asarray(audio, np.float32), SAMPLE_RATE, subtype="FLOAT", format="WAV")


class ClipReader:
    """Reads one clip lazily: frames by index (decord random access), signals and audio on first use."""

    def __init__(self, clip_dir: Path, info: ClipInfo):
        self.dir = clip_dir
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
            path = self.dir / "signals.npz"
            try:
                with np.load(path) as archive:
                    self._signals = {k: archive[k] for k in archive.files}
            except FileNotFoundError:
                raise StoreError(f"{path}: missing") from None
            except (OSError, ValueError) as error:
                raise StoreError(f"{path}: unreadable ({error})") from None
        return self._signals

    def audio(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The clip's 16 kHz mono waveform (T * 640,) float32, or its samples [start, stop) (read alone)."""
        import soundfile

        audio, rate = soundfile.read(str(self.dir / "audio.wav"), dtype="float32", start=start, stop=stop)
        if rate != SAMPLE_RATE:
            raise StoreError(f"{self.dir / 'audio.wav'}: sample rate {rate}, the store needs {SAMPLE_RATE}")
        return audio

    def __getstate__(self):
        return self.__dict__ | {"_signals": None}


class ClipStore:
    """A store opened for reading: its index, its clips by split, and readers."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(
                f"{self.root}: clip store not found (make one with `make data-synthetic` "
                f"or `dawn-preprocess`)"
            )
        self.index = read_json(self.root / "index.json")
        if self.index.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{self.root / 'index.json'}: format version {self.index.get('format_version')}, "
                f"this code reads version {FORMAT_VERSION}"
            )
        self.clips = [
            ClipInfo(m["clip_id"], int(m["num_frames"]), m["split"], m) for m in self.index["clips"]
        ]

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

    def split(self, name: str) -> list[ClipInfo]:
        if name not in SPLITS:
            raise StoreError(f"split must be one of {SPLITS}, got {name!r}")
        return [c for c in self.clips if c.split == name]

    def reader(self, info: ClipInfo) -> ClipReader:
        return ClipReader(self.root / "clips" / info.clip_id, info)
