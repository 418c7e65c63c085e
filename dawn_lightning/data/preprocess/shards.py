"""Preprocessing spread over machines: ``shard=K num_shards=N`` gives each of N processes the videos whose
path (relative to the input folder) hashes to K, so N machines write one store with no video done twice or
lost, and the store's index is written once, by `dawn-store index`, when every shard has finished.

Each shard keeps a record, ``<store>/shards/<K>-of-<N>.json``: "running" from its start, "finished" with its
counts at its end. Shards share no file they both write: clips, video records and failures are per video,
``store.json`` is the same for all and written atomically, and each shard writes its own summary,
``<store>/summaries/shard-<K>-of-<N>.json``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

from dawn_lightning.data.store_files import StoreError, read_json, write_json_atomic


def shard_of(relative_path: str | os.PathLike, num_shards: int) -> int:
    """The shard of a video: a stable hash (sha256) of its path relative to the input folder, whatever the
    machine, the mount point or the Python process."""
    digest = hashlib.sha256(Path(relative_path).as_posix().encode()).hexdigest()
    return int(digest[:16], 16) % num_shards


def record_path(root: Path, shard: int, num_shards: int) -> Path:
    return root / "shards" / f"{shard:05d}-of-{num_shards:05d}.json"


def start_shard(root: Path, shard: int, num_shards: int, videos: int) -> None:
    (root / "shards").mkdir(parents=True, exist_ok=True)
    record = {
        "shard": shard,
        "num_shards": num_shards,
        "status": "running",
        "videos": videos,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json_atomic(record_path(root, shard, num_shards), record)


def finish_shard(root: Path, shard: int, num_shards: int, counts: dict) -> None:
    path = record_path(root, shard, num_shards)
    record = read_json(path) | {"status": "finished", "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json_atomic(path, record | {"counts": counts})


def unfinished_shards(root: str | os.PathLike) -> list[str]:
    """Why the store's index cannot be written yet: each shard that has not started or not finished, named
    (empty for a store made by a single run, or when every shard has finished)."""
    folder = Path(root) / "shards"
    records = [read_json(p) for p in sorted(folder.glob("*-of-*.json"))] if folder.is_dir() else []
    if not records:
        return []
    sizes = sorted({r["num_shards"] for r in records})
    if len(sizes) > 1:
        raise StoreError(
            f"{folder}: records of runs split {' and '.join(map(str, sizes))} ways; keep one run's records "
            f"(the videos are done either way: re-run the shards of one split to finish)"
        )
    total = sizes[0]
    by_shard = {r["shard"]: r for r in records}
    reasons = []
    for shard in range(total):
        record = by_shard.get(shard)
        if record is None:
            reasons.append(f"shard {shard} of {total} has not started")
        elif record["status"] != "finished":
            reasons.append(
                f"shard {shard} of {total} is unfinished (started {record['started']} on {record['host']}, "
                f"pid {record['pid']}; if that process is gone, run the shard again: it resumes)"
            )
    return reasons
