"""LightningDataModules over a clip store: one per stage, sharing `StoreDataModule`.

Each refuses, when it is set up, a store whose index recorded problems (the fast checks run when the index is
written: files, lengths, NaN; `dawn-store validate` decodes videos too), listing them, rather than failing in
the middle of an epoch; it reads the index and nothing per clip. ``store_dir`` is a folder store or a pack
(`dawn-store pack`, local or s3:// / gs://). The data modules deal the samples to
the ranks themselves (`sampling.EpochSampler`; the trainer configs set ``use_distributed_sampler: false``):
training shuffles each epoch with the seed and the epoch, deals the samples to the ranks in turn and drops the
few left over when they do not divide evenly, as a single process drops its last incomplete batch; evaluation
gives every sample exactly once, the ranks' shares differing by at most one. A sample and its randomness
depend on its key alone, and the data module's state in a checkpoint (epoch, batches drawn) lets a run resumed
mid-epoch draw exactly the rest of that epoch.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from dawn_lightning.data.collate import BatchLengthCollate
from dawn_lightning.data.datasets import BadClips, FramePairDataset, SignalWindowDataset, VideoClipDataset
from dawn_lightning.data.motion_targets import META
from dawn_lightning.data.sampling import EpochSampler
from dawn_lightning.data.store import ClipStore, StoreError, read_json
from dawn_lightning.data.transforms import PairAugment


class StoreDataModule(L.LightningDataModule):
    """Loaders for the train/val/test splits of a clip store; subclasses say how a split becomes a dataset."""

    def __init__(
        self,
        store_dir: str,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        samples_per_clip: int = 1,
        val_batch_size: int | None = None,
        check_store: bool = True,
        on_bad_clip: str = "skip",
        bad_clips_file: str | None = None,
    ):
        super().__init__()
        self.store_dir, self.batch_size, self.num_workers = store_dir, batch_size, num_workers
        self.pin_memory, self.seed, self.samples_per_clip = pin_memory, seed, samples_per_clip
        self.val_batch_size = val_batch_size or batch_size
        self.check_store = check_store
        self.bad_clips = BadClips(on_bad_clip, bad_clips_file)  # skipped clips: listed in bad_clips_file
        self.datasets: dict[str, Dataset] = {}
        self._resume_at: dict | None = None

    @cached_property
    def store(self) -> ClipStore:
        """The store's index, read once."""
        return ClipStore(self.store_dir)

    @property
    def data_spec(self) -> dict:
        """What a model records of the data it trains on: the store's audio feature spec, frame size and kind
        (synthetic or real faces)."""
        store = self.store
        return {"audio_features": store.audio_spec, "frame_size": store.frame_size, "store_kind": store.kind}

    def train_statistics(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per signal of the training split: "mean", "std" (per channel) and "diff_std" (of frame-to-frame
        differences), computed when the store's index was written: what a model normalises with."""
        return {
            name: {k: torch.tensor(stats[k], dtype=torch.float32) for k in ("mean", "std", "diff_std")}
            for name, stats in self.store.statistics.items()
        }

    def setup(self, stage: str | None = None) -> None:
        if self.check_store and not self.datasets:
            problems = self.store.problems  # found when the index was written: nothing per clip is read here
            if problems:
                listed = "\n  ".join(problems[:20])
                more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
                raise StoreError(
                    f"{self.store_dir}: invalid clip store ({len(problems)} problems; "
                    f"`dawn-store validate {self.store_dir}` checks videos too):\n  {listed}{more}"
                )
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(split, train=split == "train")

    def make_dataset(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def collate(self, train: bool):
        return None

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self.make_dataset(split, train)
        batch_size = self.batch_size if train else self.val_batch_size
        sampler = self.sampler(self.datasets[split], train)
        if train and self._resume_at is not None:
            sampler.set_epoch(self._resume_at["epoch"])
            sampler.start_at(self._resume_at["batches"] * batch_size)
            self._resume_at = None
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate(train),
            # the loader's own seed source: creating its iterators leaves the global RNG (the model's) alone
            generator=torch.Generator().manual_seed(self.seed),
        )

    def sampler(self, dataset: Dataset, train: bool) -> EpochSampler:
        """This rank's share of ``dataset``, one epoch at a time (all of it in a single process)."""
        trainer = self.trainer
        world, rank = (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)
        return EpochSampler(len(dataset), shuffle=train, seed=self.seed, rank=rank, world_size=world)

    def state_dict(self) -> dict:
        """Where training is in its data, saved in checkpoints: the epoch and the batches already drawn."""
        trainer = self.trainer
        if trainer is None:
            return {}
        drawn = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        if drawn >= trainer.num_training_batches:  # saved at the end of an epoch: the next one starts afresh
            return {"epoch": trainer.current_epoch + 1, "batches": 0}
        return {"epoch": trainer.current_epoch, "batches": drawn}

    def load_state_dict(self, state_dict: dict) -> None:
        """A resumed run's next training loader starts where the checkpoint's run was."""
        self._resume_at = dict(state_dict) if state_dict else None

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


class FramePairDataModule(StoreDataModule):
    """Stage 1: (source, driving) frame pairs of one video, augmented in training."""

    def __init__(self, store_dir: str, augment: PairAugment | None = None, **kwargs):
        super().__init__(store_dir, **kwargs)
        self.augment = augment

    def make_dataset(self, split: str, train: bool) -> Dataset:
        return FramePairDataset(
            self.store_dir, split, train, self.seed, self.samples_per_clip, self.augment, self.bad_clips
        )


class PoseBlinkDataModule(StoreDataModule):
    """Stage 2: windows of audio features, pose and blink with padding masks."""

    def __init__(self, store_dir: str, window: int = 200, **kwargs):
        super().__init__(store_dir, **kwargs)
        self.window = window

    def make_dataset(self, split: str, train: bool) -> Dataset:
        return SignalWindowDataset(
            self.store_dir, split, train, self.window, self.seed, self.samples_per_clip, self.bad_clips
        )


class VideoClipDataModule(StoreDataModule):
    """Stage 3: clips with a reference frame, in curriculum mode A (``first``) or B (``random``).

    Mode A yields ``num_frames`` frames; mode B yields one random length in [min_frames, num_frames] per
    training batch (validation uses ``num_frames``, so its loss is comparable across epochs). ``motion_dir``
    (mode A): training reads the stage-1 targets precomputed there (`data.motion_targets`) instead of frames.
    """

    def __init__(
        self,
        store_dir: str,
        mode: str = "first",
        num_frames: int = 20,
        min_frames: int | None = None,
        motion_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(store_dir, **kwargs)
        self.mode, self.num_frames, self.motion_dir = mode, num_frames, motion_dir
        self.min_frames = num_frames if min_frames is None else min_frames

    def motion_targets_source(self) -> dict | None:
        """Which stage-1 checkpoint made the precomputed targets of ``motion_dir`` ({"motion_ckpt",
        "motion_ckpt_sha256", ...}), or None without them."""
        return None if self.motion_dir is None else read_json(Path(self.motion_dir) / META)

    def varies_length(self, train: bool) -> bool:
        return train and self.mode == "random" and self.min_frames < self.num_frames

    def make_dataset(self, split: str, train: bool) -> Dataset:
        min_frames = self.min_frames if self.varies_length(train) else None
        return VideoClipDataset(
            self.store_dir,
            split,
            train,
            self.num_frames,
            self.mode,
            self.seed,
            self.samples_per_clip,
            min_frames,
            self.motion_dir if train else None,
            self.bad_clips,
        )

    def collate(self, train: bool):
        return BatchLengthCollate() if self.varies_length(train) else None


__all__ = ["FramePairDataModule", "PoseBlinkDataModule", "StoreDataModule", "VideoClipDataModule"]
