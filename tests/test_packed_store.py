"""A packed store (`dawn-store pack`, LitData chunks) serves every data module with the folder store's
guarantees: the same clips, the same samples for the same keys, each sample once per epoch across ranks and
loader workers, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dawn_lightning.cli.store import main as store_cli
from dawn_lightning.data.clip_table import ClipTable
from dawn_lightning.data.datamodules import FramePairDataModule, PoseBlinkDataModule, VideoClipDataModule
from dawn_lightning.data.pack import pack_store
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.sync_pairs import SyncPairDataModule
from dawn_lightning.data.validate import validate_store


def test_a_pack_holds_the_store_clip_for_clip(tiny_store, tiny_pack):
    folder, pack = ClipStore(tiny_store), ClipStore(tiny_pack)
    assert pack.packed and not folder.packed and len(list((tiny_pack / "chunks").glob("*.bin"))) > 1
    assert [c.clip_id for c in pack.clips] == [c.clip_id for c in folder.clips] == ["a", "b", "c", "t", "v"]
    assert pack.statistics == folder.statistics and pack.problems == []
    for info in folder.clips:
        ours, theirs = folder.reader(info), pack.reader(pack.clips[info.row])
        frames = range(info.num_frames)
        np.testing.assert_array_equal(ours.frames(frames), theirs.frames(frames))
        np.testing.assert_array_equal(ours.audio(), theirs.audio())
        np.testing.assert_array_equal(ours.audio(640, 1280), theirs.audio(640, 1280))
        assert ours.signals.keys() == theirs.signals.keys()
        for name, values in ours.signals.items():
            np.testing.assert_array_equal(values, theirs.signals[name])
        assert theirs.meta["identity"] == info.identity
    assert validate_store(tiny_pack) == []
    assert store_cli(["info", str(tiny_pack)]) == 0


def _items(dm, split: str, train: bool, keys) -> list[dict]:
    dataset = dm.make_dataset(split, train)
    return [dataset[key] for key in keys]


@pytest.mark.parametrize(
    "make",
    [
        lambda root: FramePairDataModule(root, samples_per_clip=3),
        lambda root: PoseBlinkDataModule(root, window=10, samples_per_clip=3),
        lambda root: VideoClipDataModule(root, mode="random", num_frames=8, min_frames=4, samples_per_clip=3),
        lambda root: SyncPairDataModule(root, crop_size=16, samples_per_clip=3),
    ],
    ids=["stage1-pairs", "stage2-windows", "stage3-clips", "syncnet-pairs"],
)
def test_every_data_module_draws_the_same_samples_from_the_pack(tiny_store, tiny_pack, make):
    keys = [(epoch, index) for epoch in (0, 3) for index in (0, 4, 7)]
    for train, split in ((True, "train"), (False, "val")):
        ours = _items(make(str(tiny_store)), split, train, keys if train else [0, 1])
        theirs = _items(make(str(tiny_pack)), split, train, keys if train else [0, 1])
        for mine, packed in zip(ours, theirs, strict=True):
            assert mine.keys() == packed.keys()
            for name, value in mine.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(packed[name])), name


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_and_workers_get_each_packed_sample_exactly_once(tiny_pack, world):
    """Every training sample of an epoch reaches exactly one (rank, worker), read from the pack."""
    dm = VideoClipDataModule(str(tiny_pack), num_frames=8, batch_size=1, samples_per_clip=4, num_workers=2)
    dm.setup("fit")
    size, seen = len(dm.datasets["train"]), []
    for rank in range(world):
        dm.trainer = type("T", (), {"world_size": world, "global_rank": rank})()
        for batch in dm.train_dataloader():
            seen.append(int(batch["seed"]))  # a function of the sample's key: tells samples apart
    assert len(seen) == size - size % world == len(set(seen))


def test_a_pack_out_of_order_or_missing_is_named(tiny_store, tiny_pack, tmp_path):
    table = ClipTable.load((tiny_pack / "clips.npz").read_bytes())
    table.clip_id = table.clip_id[::-1].copy()
    table.save(tiny_pack / "clips.npz")
    store = ClipStore(tiny_pack)
    with pytest.raises(StoreError, match=r"row 0 holds clip a .* says v: the pack is out of order"):
        _ = store.reader(store.clips[0]).signals
    with pytest.raises(StoreError, match="a pack is already there"):
        pack_store(str(tiny_store), str(tiny_pack))
    with pytest.raises(StoreError, match="already a pack"):
        pack_store(str(tiny_pack), str(tmp_path / "again"))
    (tiny_pack / "index.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(StoreError, match=r"format version 1, this code reads version 2 \(`dawn-store index"):
        ClipStore(tiny_pack)


def test_pack_refuses_a_store_whose_index_records_problems(tiny_store, tmp_path, capsys):
    (tiny_store / "clips/a/signals.npz").unlink()
    assert store_cli(["index", str(tiny_store)]) == 1
    assert "a: " in capsys.readouterr().out
    assert store_cli(["pack", str(tiny_store), str(tmp_path / "pack")]) == 1
    assert "records 1 problems" in capsys.readouterr().out and not (tmp_path / "pack" / "index.json").exists()
