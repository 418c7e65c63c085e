"""Writing a clip store: clips, atomically and resumably (`StoreWriter`), and its index (`build_index`).

The index is written once all clips are there (at the end of a run, or by `dawn-store index` once every shard
of a preprocessing run spread over machines has finished). Writing it reads each clip's record and signals
once: the fast checks (files, shapes, NaN, audio length) and the training split's signal statistics are done
there and recorded, so a training process reads the index and nothing per clip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, __version__
from dawn_lightning.data.clip_table import SPLITS, ClipTable
from dawn_lightning.data.signal_stats import add_sums, clip_sums, statistics
from dawn_lightning.data.store import FORMAT_VERSION, SIGNAL_DIMS, ClipRecord
from dawn_lightning.data.store_files import StoreError, config_hash, read_json, write_json_atomic
from dawn_lightning.data.validate import folder_clip_problems, split_problems
from dawn_lightning.data.video_io import write_mp4

READ_THREADS = 8  # clip records (JSON) read at once while indexing (a shared file system's latency)


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
        tmp = final.with_name(f".{clip.clip_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
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
        """Write the index from the complete clips and recorded failures (`build_index`); returns it."""
        return build_index(self.root, splits)

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


def build_index(root: str | os.PathLike, splits: Callable[[list[str]], dict[str, str]] | None = None) -> dict:
    """Write ``clips.npz`` and ``index.json`` of the folder store at ``root`` from its complete clips;
    returns the index.

    ``splits``: identities -> {identity: split}, called with the identities that have clips, so a split is
    made from speakers that produced clips (not from videos that later failed); a clip whose split changes
    has its meta.json rewritten. A clip whose record cannot be read is left out and named in the index's
    ``problems``, as is every finding of the fast checks (training refuses a store with problems)."""
    root = Path(root)
    header = read_json(root / "store.json")
    folders = sorted(d for d in (root / "clips").iterdir() if d.is_dir() and not d.name.startswith("."))
    problems: list[str] = []
    with ThreadPoolExecutor(READ_THREADS) as pool:
        records = list(pool.map(_read_record, folders))
    clips = []
    for record in records:
        (problems.append(record) if isinstance(record, str) else clips.append(record))
    if splits is not None and clips:
        chosen = splits(sorted({str(c["identity"]) for c in clips}))
        for clip in clips:
            if clip["split"] != chosen[str(clip["identity"])]:
                clip["split"] = chosen[str(clip["identity"])]
                write_json_atomic(root / "clips" / clip["clip_id"] / "meta.json", clip)
    table = ClipTable.from_entries(clips)
    dims, size = header["signals"], header["frame_size"]

    def scan(row: int):
        info = table.info(row)
        found, signals = folder_clip_problems(root / "clips" / info.clip_id, info.num_frames, dims, size)
        sums = clip_sums(signals) if signals is not None and not found and info.split == "train" else None
        return [f"{info.clip_id}: {m}" for m in found], sums

    train = None
    # in this thread: np.load parses each array header with ast, whose parser is not thread-safe in Python
    # 3.11 ("AST constructor recursion depth mismatch" seen with 8 threads)
    for found, sums in map(scan, range(len(table))):
        problems += found
        train = train if sums is None else add_sums(train, sums)
    counts = {s: int((table.split == k).sum()) for k, s in enumerate(SPLITS)}
    failed = sorted((read_json(p) for p in (root / "failed").glob("*.json")), key=lambda m: m["clip_id"])
    index = header | {
        "format_version": FORMAT_VERSION,
        "layout": "folder",
        "num_clips": len(table),
        "splits": counts,
        "total_frames": int(table.num_frames.sum()),
        "failed": failed,
        "statistics": {"train": statistics(train)},
        "problems": [*(f"store: {m}" for m in split_problems(counts)), *problems],
    }
    table.save(root / "clips.npz")
    write_json_atomic(root / "index.json", index)
    return index


def _read_record(folder: Path) -> dict | str:
    """A clip's meta.json, or the problem that stops reading it."""
    try:
        record = read_json(folder / "meta.json")
    except StoreError as error:
        return f"{folder.name}: {error}"
    if not {"clip_id", "num_frames", "split"} <= record.keys() or record["split"] not in SPLITS:
        return f"{folder.name}: {folder / 'meta.json'} lacks clip_id, num_frames or a split of {SPLITS}"
    return record | {"identity": str(record.get("identity", record["clip_id"]))}
