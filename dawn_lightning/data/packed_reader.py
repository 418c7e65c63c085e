"""Reading a packed store: its clips are items of a LitData streaming dataset (``<pack>/chunks``), one item
per clip in clip-table order, on local disk or at an s3:// / gs:// address (LitData downloads chunks to its
cache). The data modules draw samples by index with their own sampler, exactly as from a folder store, so
a sample and its randomness stay functions of (seed, epoch, index); `PackedClipReader` is the pack's
`ClipReader`.
"""

from __future__ import annotations

import json
import os

import numpy as np

from dawn_lightning.data.clip_table import ClipInfo
from dawn_lightning.data.store_files import StoreError
from dawn_lightning.data.video_io import VideoReader

SIGNAL_PREFIX = "signal_"  # an item's per-frame arrays are its keys with this prefix


class PackedClips:
    """The pack's LitData dataset, opened in the process that reads it (a forked worker opens its own)."""

    def __init__(self, root, chunks: str = "chunks"):
        from litdata import StreamingDataset

        self.root, self.pid = root, os.getpid()
        address = f"{root}/{chunks}"
        try:
            self.dataset = StreamingDataset(address)
        except (FileNotFoundError, ValueError) as error:
            raise StoreError(f"{address}: not a readable LitData pack ({error})") from None

    def usable(self) -> bool:
        return self.pid == os.getpid()

    def item(self, info: ClipInfo) -> dict:
        try:
            item = self.dataset[info.row]
        except (OSError, ValueError, IndexError, RuntimeError) as error:
            raise StoreError(f"{self.root} row {info.row} ({info.clip_id}): unreadable ({error})") from None
        if int(item["row"]) != info.row or item["clip_id"] != info.clip_id:
            raise StoreError(
                f"{self.root}: row {info.row} holds clip {item['clip_id']} (row {item['row']}), the clip "
                f"table says {info.clip_id}: the pack is out of order, pack the store again"
            )
        return item

    def reader(self, info: ClipInfo) -> PackedClipReader:
        return PackedClipReader(self, info)


class PackedClipReader:
    """One clip of a pack, read on first use: frames (decoded from the packed mp4 bytes, or raw), signals,
    speech and the clip's record."""

    def __init__(self, clips: PackedClips, info: ClipInfo):
        self.clips, self.info = clips, info
        self.where = f"{clips.root} row {info.row} ({info.clip_id})"
        self._item: dict | None = None
        self._video: VideoReader | None = None

    @property
    def item(self) -> dict:
        if self._item is None:
            self._item = self.clips.item(self.info)
        return self._item

    def video(self) -> VideoReader | np.ndarray:
        """A reader of the packed mp4, or the raw frames (T, S, S, 3)."""
        if "frames" in self.item:
            return self.item["frames"]
        if self._video is None:
            self._video = VideoReader(self.where, data=bytes(self.item["frames_mp4"]))
        return self._video

    def frames(self, indices) -> np.ndarray:
        indices = [int(i) for i in indices]
        video = self.video()
        if isinstance(video, np.ndarray):
            return video[indices]
        try:
            return video.get(indices)
        except (OSError, IndexError) as error:
            raise StoreError(str(error)) from None

    @property
    def signals(self) -> dict[str, np.ndarray]:
        return {k[len(SIGNAL_PREFIX) :]: v for k, v in self.item.items() if k.startswith(SIGNAL_PREFIX)}

    def audio(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.item["audio"][start:stop]

    @property
    def meta(self) -> dict:
        return json.loads(self.item["meta"])

    def __getstate__(self):
        return self.__dict__ | {"_item": None, "_video": None}
