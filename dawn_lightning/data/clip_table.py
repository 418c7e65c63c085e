"""The clips of a store as columns: what a training process holds of the index, whatever the store's size.

A store's index lists its clips in ``clips.npz`` (clip id, frames, split, speaker; one array each), not as one
JSON object per clip: a million clips load in well under a second into some tens of MB, where a list of
dicts costs gigabytes. `ClipList` is a view of some rows (a split, the clips long enough for a sample) that
makes a `ClipInfo` only for the row asked for.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClipInfo:
    """One clip's entry in the index; ``row`` is its place in the store's clip table (and in a pack)."""

    clip_id: str
    num_frames: int
    split: str
    identity: str
    row: int

    @property
    def group(self) -> str:
        """The identity (speaker) of the clip: stage 3 in mode B draws references within it."""
        return self.identity


class ClipTable:
    """Columns of every clip, in clip-id order: ``clip_id`` and ``identities`` are byte strings, ``split``
    indexes SPLITS and ``identity`` indexes ``identities``."""

    def __init__(self, clip_id, num_frames, split, identity, identities):
        self.clip_id = np.asarray(clip_id, dtype=np.bytes_)
        self.num_frames = np.asarray(num_frames, dtype=np.int32)
        self.split = np.asarray(split, dtype=np.int8)
        self.identity = np.asarray(identity, dtype=np.int32)
        self.identities = np.asarray(identities, dtype=np.bytes_)

    @classmethod
    def from_entries(cls, entries: Sequence[dict]) -> ClipTable:
        """From per-clip records ({"clip_id", "num_frames", "split", "identity"}), sorted by clip id."""
        entries = sorted(entries, key=lambda e: e["clip_id"])
        names = sorted({str(e.get("identity", e["clip_id"])) for e in entries})
        code = {name: k for k, name in enumerate(names)}
        return cls(
            [e["clip_id"].encode() for e in entries],
            [int(e["num_frames"]) for e in entries],
            [SPLITS.index(e["split"]) for e in entries],
            [code[str(e.get("identity", e["clip_id"]))] for e in entries],
            [n.encode() for n in names],
        )

    def __len__(self) -> int:
        return len(self.clip_id)

    def info(self, row: int) -> ClipInfo:
        return ClipInfo(
            self.clip_id[row].decode(),
            int(self.num_frames[row]),
            SPLITS[self.split[row]],
            self.identities[self.identity[row]].decode(),
            int(row),
        )

    def rows(self, split: str | None = None) -> ClipList:
        chosen = np.arange(len(self)) if split is None else np.flatnonzero(self.split == SPLITS.index(split))
        return ClipList(self, chosen)

    def save(self, path: Path) -> None:
        """Written atomically (a temporary file renamed into place)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **self.columns())
        os.replace(tmp, path)

    def columns(self) -> dict[str, np.ndarray]:
        names = ("clip_id", "num_frames", "split", "identity", "identities")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def load(cls, data: bytes | Path) -> ClipTable:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with np.load(source, allow_pickle=False) as archive:
            return cls(
                *(archive[name] for name in ("clip_id", "num_frames", "split", "identity", "identities"))
            )


class ClipList(Sequence):
    """Some rows of a `ClipTable`, as a sequence of `ClipInfo` made on access."""

    def __init__(self, table: ClipTable, rows: np.ndarray):
        self.table, self.rows = table, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return ClipList(self.table, self.rows[k])
        return self.table.info(self.rows[k])

    @property
    def num_frames(self) -> np.ndarray:
        return self.table.num_frames[self.rows]

    def where(self, keep: np.ndarray) -> ClipList:
        """The rows where the boolean array ``keep`` (one per row of this list) is true."""
        return ClipList(self.table, self.rows[keep])
