"""`dawn-store pack`: a folder store -> a packed store for streaming, in LitData's chunk format.

Why LitData (the comparison with WebDataset and MosaicML Streaming is in docs/data-at-scale.md): it reads a
clip by its index from local chunks or from object storage, so the data modules keep their own sampler and
its guarantees (a sample a function of (seed, epoch, index); N ranks with batch B draw what one process with
N x B draws; a resumed run continues bit for bit), and it is Lightning's own, with no pin that fights this
project's (MosaicML Streaming requires numpy < 2.2).

A pack is ``<out>/chunks/`` (LitData: one item per clip, in clip-table order, with its row and id so a read
can check the order), ``<out>/clips.npz`` and ``<out>/index.json`` (the folder store's index, statistics
and checks included, with ``layout: packed``), written last: a pack without its index is unfinished.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np

from dawn_lightning.data.packed_reader import SIGNAL_PREFIX
from dawn_lightning.data.store import ClipStore
from dawn_lightning.data.store_files import StoreError, is_remote, load_signals, write_bytes


def clip_item(store_root: str, clip_id: str, row: int) -> dict:
    """One clip of a folder store as a pack item: its mp4 bytes (or raw frames), speech, signals, record."""
    import soundfile

    clip_dir = Path(store_root) / "clips" / clip_id
    item = {"row": row, "clip_id": clip_id}
    mp4 = clip_dir / "frames.mp4"
    if mp4.exists():
        item["frames_mp4"] = mp4.read_bytes()
    else:
        item["frames"] = np.load(clip_dir / "frames.npy")
    item["audio"] = soundfile.read(str(clip_dir / "audio.wav"), dtype="float32")[0]
    for name, values in load_signals(clip_dir / "signals.npz").items():
        item[SIGNAL_PREFIX + name] = np.ascontiguousarray(values, dtype=np.float32)
    item["meta"] = (clip_dir / "meta.json").read_text()
    return item


def _row_item(store_root: str, clip_ids: list[str], row: int) -> dict:
    return clip_item(store_root, clip_ids[row], row)


def pack_store(
    store_dir: str, out: str, chunk_bytes: str = "256MB", workers: int = 1, progress: bool = False
) -> dict:
    """Pack the folder store at ``store_dir`` into ``out`` (a local folder or an s3:// / gs:// address);
    returns the pack's index. Refuses a store whose index recorded problems, and an existing pack."""
    from litdata import __version__ as litdata_version
    from litdata import optimize

    store = ClipStore(store_dir)
    if store.packed:
        raise StoreError(f"{store_dir}: already a pack")
    if store.problems:
        raise StoreError(
            f"{store_dir}: its index records {len(store.problems)} problems (first: {store.problems[0]}); "
            f"fix them and rebuild the index (`dawn-store index`) before packing"
        )
    if not is_remote(out):
        target = Path(out)
        if (target / "index.json").exists():
            raise StoreError(f"{out}: a pack is already there; write to a new folder or delete it")
        shutil.rmtree(target / "chunks", ignore_errors=True)  # an unfinished pack (no index): start again
        target.mkdir(parents=True, exist_ok=True)
    clip_ids = [c.decode() for c in store.table.clip_id]
    optimize(
        fn=partial(_row_item, str(store.root), clip_ids),
        inputs=list(range(len(clip_ids))),
        output_dir=f"{out}/chunks",
        chunk_bytes=chunk_bytes,
        num_workers=workers,
        reorder_files=False,
        keep_data_ordered=True,  # each worker packs a contiguous slice in order: item k is row k
        verbose=progress,
    )
    index = store.index | {
        "layout": "packed",
        "chunks": "chunks",
        "packed_from": str(store.root),
        "packed_with": f"litdata {litdata_version}",
    }
    with open(store.root / "clips.npz", "rb") as handle:
        write_bytes(out, "clips.npz", handle.read())
    write_bytes(out, "index.json", json.dumps(index, indent=1, sort_keys=True).encode())
    return index
