"""Atomic checkpoint writes: a run killed while saving keeps its previous complete checkpoint.

Lightning writes through fsspec, whose local "transaction" writes a temporary file in the system's temp
folder and moves it over the target: across file systems (a tmpfs /tmp, a cluster's scratch) that move is a
copy into the truncated target, and a kill in the middle leaves a broken ``last.ckpt``. Here the checkpoint
is written beside its target, flushed to disk, then renamed over it (`os.replace`: atomic on POSIX).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic (remote URLs keep Lightning's own save)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.partial"):  # left by a process killed while saving
            stale.unlink(missing_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
