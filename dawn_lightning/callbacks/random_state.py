"""The random states of a run (Python, NumPy, torch CPU and CUDA) saved in its checkpoints and restored on
resume, so a resumed run draws the same samples, noise and augmentations as an uninterrupted one.

Stored as tensors and plain values only: checkpoints stay loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RandomState(Callback):
    """Checkpoints carry the random states at the time of saving; resuming restores them when training starts
    (`on_train_start`): after what a fresh run also does before its first batch and a resumed run repeats
    (building and checking the data loaders draws a seed, the sanity check), so both runs go on alike. Under
    DDP only rank 0's states are saved: the other ranks resume from them reseeded with their rank (distinct
    draws, but not those of an uninterrupted run)."""

    def __init__(self):
        self._loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, keys, gauss = random.getstate()
        kind, mt, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global state)
        return {
            "python": {"version": version, "state": torch.tensor(keys, dtype=torch.int64), "gauss": gauss},
            "numpy": {
                "kind": kind,
                "state": torch.from_numpy(mt.astype(np.int64)),
                "position": position,
                "has_gauss": has_gauss,
                "cached": cached,
            },
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._loaded is None:
            return
        restore(self._loaded)
        self._loaded = None
        if trainer.global_rank > 0:  # checkpoints hold rank 0's states: keep the other ranks' draws distinct
            seed = (int(torch.randint(2**31, ())) + trainer.global_rank) % 2**32
            random.seed(seed)
            np.random.seed(seed)  # noqa: NPY002
            torch.manual_seed(seed)


def restore(state_dict: dict[str, Any]) -> None:
    """Sets the random states of `RandomState.state_dict`."""
    python, numpy = state_dict["python"], state_dict["numpy"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    np.random.set_state(  # noqa: NPY002
        (
            numpy["kind"],
            numpy["state"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached"],
        )
    )
    torch.set_rng_state(state_dict["torch"])
    if state_dict["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state_dict["cuda"])
