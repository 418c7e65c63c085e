"""LightningDataModules over a clip store: one per stage, sharing `StoreDataModule`.

Each checks the store when it is set up (files, lengths, NaN; videos are checked by `dawn-store validate`) and
fails with every problem listed, rather than in the middle of an epoch. Under DDP Lightning shards the
samplers: under DDP each rank gets its own share of every epoch, without repeats (training: the
samples of an epoch are shuffled with the seed and the epoch, dealt to the ranks in turn, and the few left
over when they do not divide evenly are dropped, as a single process drops its last incomplete batch;
evaluation: every sample exactly once, the ranks' shares differing by at most one).
"""

from __future__ import annotations

from functools import cached_property

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from dawn_lightning.data.collate import RandomLengthCollate
from dawn_lightning.data.datasets import FramePairDataset, SignalWindowDataset, VideoClipDataset
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.transforms import PairAugment
from dawn_lightning.data.validate import validate_store


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
    ):
        super().__init__()
        self.store_dir, self.batch_size, self.num_workers = store_dir, batch_size, num_workers
        self.pin_memory, self.seed, self.samples_per_clip = pin_memory, seed, samples_per_clip
        self.val_batch_size = val_batch_size or batch_size
        self.check_store = check_store
        self.datasets: dict[str, Dataset] = {}

    @cached_property
    def store(self) -> ClipStore:
        """The store's index, read once."""
        return ClipStore(self.store_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.check_store and not self.datasets:
            problems = validate_store(self.store_dir, decode=False)
            if problems:
                listed = "\n  ".join(map(str, problems[:20]))
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
        sampler = self.sampler(self.datasets[split], train)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.val_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate(train),
        )

    def sampler(self, dataset: Dataset, train: bool) -> Sampler | None:
        """This rank's share of ``dataset`` when training runs on several processes (None: all of it)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        ranks = {"num_replicas": trainer.world_size, "rank": trainer.global_rank}
        if train:
            return DistributedSampler(dataset, shuffle=True, seed=self.seed, drop_last=True, **ranks)
        return UnrepeatedDistributedSampler(dataset, shuffle=False, **ranks)

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
        return FramePairDataset(self.store_dir, split, train, self.seed, self.samples_per_clip, self.augment)


class PoseBlinkDataModule(StoreDataModule):
    """Stage 2: windows of audio features, pose and blink with padding masks."""

    def __init__(self, store_dir: str, window: int = 200, **kwargs):
        super().__init__(store_dir, **kwargs)
        self.window = window

    def make_dataset(self, split: str, train: bool) -> Dataset:
        return SignalWindowDataset(
            self.store_dir, split, train, self.window, self.seed, self.samples_per_clip
        )


class VideoClipDataModule(StoreDataModule):
    """Stage 3: clips with a reference frame, in curriculum mode A (``first``) or B (``random``).

    Mode A yields ``num_frames`` frames; mode B yields one random length in [min_frames, num_frames] per
    training batch (validation uses ``num_frames``, so its loss is comparable across epochs).
    """

    def __init__(
        self,
        store_dir: str,
        mode: str = "first",
        num_frames: int = 20,
        min_frames: int | None = None,
        **kwargs,
    ):
        super().__init__(store_dir, **kwargs)
        self.mode, self.num_frames = mode, num_frames
        self.min_frames = num_frames if min_frames is None else min_frames

    def make_dataset(self, split: str, train: bool) -> Dataset:
        return VideoClipDataset(
            self.store_dir, split, train, self.num_frames, self.mode, self.seed, self.samples_per_clip
        )

    def collate(self, train: bool):
        if train and self.mode == "random" and self.min_frames < self.num_frames:
            return RandomLengthCollate(self.min_frames, self.num_frames)
        return None


__all__ = ["FramePairDataModule", "PoseBlinkDataModule", "StoreDataModule", "VideoClipDataModule"]
