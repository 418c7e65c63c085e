"""Datasets over a clip store, one per stage's sampling need, sharing one core (`StoreDataset`).

Per-frame tensors are time-major: audio (T, D), pose (T, 6), blink (T, 2), boxes (T, 4); video is (3, T, H, W)
as in DESIGN.md. A sample's randomness is a function of its key (`sampling.sample_rng`): (seed, epoch, index)
in training, (seed, index) in evaluation, so validation sees the same windows every epoch, and a sample is the
same whatever the number of ranks and workers, and after a resume.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from dawn_lightning import SAMPLES_PER_FRAME
from dawn_lightning.data.motion_targets import MotionTargets
from dawn_lightning.data.sampling import Key, draw_seed, sample_rng, split_key
from dawn_lightning.data.store import ClipInfo, ClipReader, ClipStore, StoreError
from dawn_lightning.data.transforms import PairAugment, frames_to_tensor
from dawn_lightning.tensors.frames import fit_length

log = logging.getLogger(__name__)
SIGNALS = ("audio_features", "pose", "blink", "face_box", "mouth_box")
ON_BAD_CLIP = ("skip", "error")
SKIP_ATTEMPTS = 16  # unreadable clips in a row before a sample gives up
OPEN_READERS = 64  # readers a process keeps open, the most recently used
# Readers a forked worker inherited from its parent. They are kept alive, never used: destroying a decord
# reader in a child process aborts it (its destructor joins threads that exist only in the parent).
_INHERITED_READERS: list[dict] = []


class BadClips:
    """What a dataset does with a clip it cannot read (a truncated video, an unreadable signals file):
    ``on_bad_clip`` "skip" reports it once per process (a warning, and a JSON line appended to ``path``, the
    run folder's ``bad_clips.jsonl``) and takes another sample; "error" stops with the reader's error."""

    def __init__(self, on_bad_clip: str = "skip", path: str | os.PathLike | None = None):
        if on_bad_clip not in ON_BAD_CLIP:
            raise ValueError(f"data.on_bad_clip must be one of {ON_BAD_CLIP}, got {on_bad_clip!r}")
        self.on_bad_clip, self.path = on_bad_clip, None if path is None else Path(path)
        self._seen: set[str] = set()

    def known(self, clip_id: str) -> bool:
        return clip_id in self._seen

    def __len__(self) -> int:
        """The clips this process found unreadable."""
        return len(self._seen)

    def handle(self, clip_id: str, error: StoreError) -> None:
        """A clip that could not be read: raise ``error`` ("error"), or report the clip ("skip")."""
        if self.on_bad_clip == "error":
            raise error
        self.report(clip_id, error)

    def report(self, clip_id: str, error: Exception) -> None:
        self._seen.add(clip_id)
        log.warning("clip %s skipped: %s (data.on_bad_clip=error stops instead)", clip_id, error)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"clip_id": clip_id, "error": str(error), "pid": os.getpid()}) + "\n"
            with open(self.path, "a") as handle:  # one short appended line: whole under O_APPEND
                handle.write(line)

    def __getstate__(self):
        return self.__dict__ | {"_seen": set()}


def count_bad_clips(path: str | os.PathLike | None) -> int:
    """The distinct clips listed in a ``bad_clips.jsonl`` (0 when there is none)."""
    if path is None or not Path(path).is_file():
        return 0
    lines = Path(path).read_text().splitlines()
    return len({json.loads(line)["clip_id"] for line in lines if line.strip()})


class StoreDataset(Dataset):
    """One split of a clip store: clip selection, per-process readers and the sample RNG."""

    def __init__(
        self,
        store_dir: str,
        split: str,
        train: bool,
        seed: int = 0,
        min_frames: int = 1,
        samples_per_clip: int = 1,
        bad_clips: BadClips | None = None,
    ):
        store = ClipStore(store_dir)
        available = store.split(split)
        self.clips = available.where(available.num_frames >= min_frames)
        if not self.clips:
            raise StoreError(
                f"{store.root}: split {split!r} has no clips of at least {min_frames} frames "
                f"({len(available)} clips in the split)"
            )
        self.store_dir, self.split, self.train, self.seed = store.root, split, train, seed
        self.samples_per_clip = samples_per_clip
        self.frame_size, self.audio_dim = store.frame_size, store.audio_dim
        self._store = store
        self._readers: OrderedDict[str, ClipReader] = OrderedDict()
        self._pid = os.getpid()
        self.bad_clips = bad_clips if bad_clips is not None else BadClips()

    def __len__(self) -> int:
        return len(self.clips) * self.samples_per_clip

    def __getitem__(self, key: int | Key) -> dict:
        """The sample of ``key``; one whose clip cannot be read is reported and, with ``on_bad_clip`` "skip",
        replaced by the sample of the next clip (a function of the key too, so ranks and resumes agree)."""
        epoch, index = split_key(key)
        for attempt in range(min(SKIP_ATTEMPTS, len(self))):
            candidate = (epoch, (index + attempt * self.samples_per_clip) % len(self))
            info = self.clip_of(candidate)
            if self.bad_clips.known(info.clip_id):
                continue
            try:
                return self.item(candidate)
            except StoreError as error:
                self.bad_clips.handle(info.clip_id, error)
        raise StoreError(
            f"{self.store_dir}: {SKIP_ATTEMPTS} clips in a row of split {self.split!r} cannot be read "
            f"(listed in {self.bad_clips.path or 'the log'}); check the store with `dawn-store validate`"
        )

    def item(self, key: int | Key) -> dict:
        raise NotImplementedError

    def clip_of(self, key: int | Key) -> ClipInfo:
        """The clip a sample reads."""
        return self.clip(key)

    def reader(self, info: ClipInfo) -> ClipReader:
        """A reader for ``info``, opened once per process (decoders must not be shared across a fork)."""
        if self._pid != os.getpid():
            _INHERITED_READERS.append(self._readers)
            self._readers, self._pid = OrderedDict(), os.getpid()
        if info.clip_id not in self._readers:
            self._readers[info.clip_id] = self._store.reader(info)
            if len(self._readers) > OPEN_READERS:  # a million clips must not mean a million open readers
                self._readers.popitem(last=False)
        self._readers.move_to_end(info.clip_id)
        return self._readers[info.clip_id]

    def rng(self, key: int | Key) -> np.random.Generator:
        return sample_rng(self.seed, key, self.train)

    def clip(self, key: int | Key) -> ClipInfo:
        return self.clips[split_key(key)[1] // self.samples_per_clip]

    def __getstate__(self):
        return self.__dict__ | {"_readers": OrderedDict()}


class FramePairDataset(StoreDataset):
    """Stage 1: a (source, driving) pair of frames of one video, each float (3, H, W) in [0, 1], and the
    driving frame's normalised mouth box (4) for the mouth-weighted reconstruction loss."""

    def __init__(
        self,
        store_dir: str,
        split: str,
        train: bool,
        seed: int = 0,
        samples_per_clip: int = 1,
        augment: PairAugment | None = None,
        bad_clips: BadClips | None = None,
    ):
        super().__init__(store_dir, split, train, seed, 2, samples_per_clip, bad_clips)
        self.augment = augment if train else None

    def item(self, key: int | Key) -> dict:
        info, rng = self.clip(key), self.rng(key)
        source, driving = rng.choice(info.num_frames, size=2, replace=False)
        reader = self.reader(info)
        pair = frames_to_tensor(reader.frames([source, driving]))
        boxes = torch.from_numpy(reader.signals["mouth_box"][[source, driving]]).float()
        if self.augment is not None:
            pair, boxes = self.augment(pair, boxes, rng)
        item = {"source": pair[0], "driving": pair[1], "driving_mouth_box": boxes[1]}
        if self.train:
            item["seed"] = draw_seed(rng)
        return item


class SignalWindowDataset(StoreDataset):
    """Stage 2: N-frame windows of audio features, pose and blink with a padding mask.

    Training draws a random window per sample; evaluation tiles every clip with consecutive windows, so it
    covers each frame once. Clips shorter than N are zero-padded and ``mask`` marks the real frames.
    """

    def __init__(
        self,
        store_dir: str,
        split: str,
        train: bool,
        window: int = 200,
        seed: int = 0,
        samples_per_clip: int = 1,
        bad_clips: BadClips | None = None,
    ):
        super().__init__(store_dir, split, train, seed, 2, samples_per_clip, bad_clips)
        self.window = window
        self.windows = [(c, start) for c in self.clips for start in range(0, c.num_frames - 1, window)]

    def __len__(self) -> int:
        return super().__len__() if self.train else len(self.windows)

    def clip_of(self, key: int | Key) -> ClipInfo:
        return self.clip(key) if self.train else self.windows[split_key(key)[1]][0]

    def item(self, key: int | Key) -> dict:
        item = {}
        if self.train:
            info, rng = self.clip(key), self.rng(key)
            start = int(rng.integers(0, max(1, info.num_frames - self.window + 1)))
            item["seed"] = draw_seed(rng)
        else:
            info, start = self.windows[split_key(key)[1]]
        signals = self.reader(info).signals
        length = min(self.window, info.num_frames - start)
        for name, key in (("audio", "audio_features"), ("pose", "pose"), ("blink", "blink")):
            values = torch.zeros(self.window, signals[key].shape[1])
            values[:length] = torch.from_numpy(signals[key][start : start + length])
            item[name] = values
        item["mask"] = torch.arange(self.window) < length
        return item


class VideoClipDataset(StoreDataset):
    """Stage 3: a clip of frames with its per-frame conditions and a reference frame.

    - ``mode="first"`` (curriculum A): ``num_frames`` consecutive frames; the reference is the first of them.
    - ``mode="random"`` (curriculum B): ``num_frames`` consecutive frames; the reference is a random frame of
      the whole video. With ``min_frames``, each sample also draws a ``length`` in [min_frames, num_frames],
      and `BatchLengthCollate` crops the batch to its first sample's.

    Returns ``video`` float (3, F, H, W) in [0, 1], ``audio`` (F, D), ``pose`` (F, 6), ``blink`` (F, 2),
    ``face_box``/``mouth_box`` (F, 4), ``reference`` (3, H, W), ``ref_pose`` (6), ``ref_blink`` (2),
    ``ref_face_box`` (4) and ``ref_index`` (the reference's frame number in the video).
    """

    def __init__(
        self,
        store_dir: str,
        split: str,
        train: bool,
        num_frames: int = 20,
        mode: Literal["first", "random"] = "first",
        seed: int = 0,
        samples_per_clip: int = 1,
        min_frames: int | None = None,
        motion_dir: str | None = None,
        bad_clips: BadClips | None = None,
    ):
        if mode not in ("first", "random"):
            raise ValueError(f"mode must be 'first' or 'random', got {mode!r}")
        if motion_dir is not None and (mode != "first" or not train):
            raise ValueError("precomputed motion targets (motion_dir) serve curriculum A training only")
        if min_frames is not None and not 1 <= min_frames <= num_frames:
            raise ValueError(f"need 1 <= min_frames <= num_frames, got {min_frames}, {num_frames}")
        super().__init__(store_dir, split, train, seed, num_frames, samples_per_clip, bad_clips)
        self.num_frames, self.mode, self.min_frames = num_frames, mode, min_frames
        self.targets = None if motion_dir is None else MotionTargets(motion_dir, num_frames)
        if self.targets is not None:
            missing = [c.clip_id for c in self.clips if not self.targets.has(c.clip_id)]
            if missing:
                named = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                raise StoreError(
                    f"{motion_dir}: no motion targets for {len(missing)} {split} clips ({named}): "
                    f"run dawn-precompute-motion on {self.store_dir}"
                )

    def item(self, key: int | Key) -> dict:
        info, rng = self.clip(key), self.rng(key)
        reader = self.reader(info)
        if self.targets is not None:  # a precomputed start: its x0 and z_src instead of frames
            targets = self.targets.clip(info.clip_id)
            k = int(rng.integers(len(targets["starts"])))
            start = ref = int(targets["starts"][k])
            item = {name: torch.from_numpy(targets[name][k].astype(np.float32)) for name in ("x0", "z_src")}
        else:
            start = int(rng.integers(0, info.num_frames - self.num_frames + 1))
            ref = start if self.mode == "first" else int(rng.integers(0, info.num_frames))
            frames = frames_to_tensor(reader.frames([ref, *range(start, start + self.num_frames)]))
            item = {"video": rearrange(frames[1:], "t c h w -> c t h w"), "reference": frames[0]}
        item["ref_index"] = torch.tensor(ref)
        signals = reader.signals
        if self.min_frames is not None:
            item["length"] = torch.tensor(int(rng.integers(self.min_frames, self.num_frames + 1)))
        if self.train:
            item["seed"] = draw_seed(rng)
        for name in SIGNALS:
            item["audio" if name == "audio_features" else name] = torch.from_numpy(
                signals[name][start : start + self.num_frames].copy()
            )
        for name in ("pose", "blink", "face_box"):
            item[f"ref_{name}"] = torch.from_numpy(signals[name][ref].copy())
        if not self.train:  # evaluation: the clip's 16 kHz speech (F * 640,), the sound of sample videos
            speech = reader.audio(start * SAMPLES_PER_FRAME, (start + self.num_frames) * SAMPLES_PER_FRAME)
            item["speech"] = torch.from_numpy(fit_length(speech, self.num_frames).copy())
        return item
