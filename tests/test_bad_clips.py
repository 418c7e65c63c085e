"""One unreadable clip in a store must not end a training run: it is skipped, counted and listed
(``data.on_bad_clip=skip``), or it stops the run with one line naming the file (``error``)."""

from __future__ import annotations

import json
import shutil

import pytest

from dawn_lightning.config import compose
from dawn_lightning.data.datasets import BadClips, FramePairDataset, count_bad_clips
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.training.run import train


@pytest.fixture(scope="module")
def broken_store(synthetic, tmp_path_factory):
    """A copy of the small synthetic store whose first training clip's frames.mp4 is cut to a third."""
    root = tmp_path_factory.mktemp("broken") / "store"
    shutil.copytree(synthetic.root, root)
    clip = ClipStore(root).split("train")[0].clip_id
    video = root / "clips" / clip / "frames.mp4"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3])
    return root, clip


def test_a_truncated_clip_is_skipped_once_and_listed(broken_store, tmp_path):
    root, clip = broken_store
    listed = tmp_path / "bad_clips.jsonl"
    dataset = FramePairDataset(
        str(root), "train", True, samples_per_clip=4, bad_clips=BadClips("skip", listed)
    )
    items = [dataset[(0, i)] for i in range(len(dataset))]  # every sample comes back, the bad clip's replaced
    assert len(items) == len(dataset) and all(item["source"].shape == (3, 64, 64) for item in items)
    records = [json.loads(line) for line in listed.read_text().splitlines()]
    assert [r["clip_id"] for r in records] == [clip]  # reported once, not once per sample
    assert "frames.mp4" in records[0]["error"] and count_bad_clips(listed) == 1
    assert dataset[(0, 0)]["source"].shape == (3, 64, 64)  # the same key again: still a sample


def test_error_mode_stops_with_the_file_named(broken_store):
    root, clip = broken_store
    dataset = FramePairDataset(str(root), "train", True, samples_per_clip=4, bad_clips=BadClips("error"))
    with pytest.raises(StoreError, match=rf"{clip}/frames\.mp4: cannot decode"):
        for i in range(len(dataset)):
            dataset[(0, i)]
    with pytest.raises(ValueError, match="data.on_bad_clip must be one of"):
        BadClips("ignore")


def stage1(root, out, *extra):
    return compose(
        "train",
        [
            "experiment=stage1",
            f"data.store_dir={root}",
            f"hydra.run.dir={out}",
            "trainer.limit_train_batches=3",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=0",
            "datamodule.batch_size=4",
            "datamodule.samples_per_clip=4",
            "datamodule.num_workers=0",
            "datamodule.augment=null",
            "callbacks=none",
            "+callbacks.monitor._target_=dawn_lightning.callbacks.monitoring.TrainingMonitor",
            "logger=csv",
            "model.net.region.num_blocks=2",
            "model.net.flow.num_blocks=2",
            *extra,
        ],
    )


@pytest.mark.slow
def test_stage1_training_skips_counts_and_lists_a_truncated_clip(broken_store, tmp_path, one_thread):
    root, clip = broken_store
    _, trainer = train(stage1(root, tmp_path / "skip"))
    assert trainer.global_step == 3 and not trainer.interrupted
    assert float(trainer.callback_metrics["train/skipped_clips"]) == 1
    (record,) = [
        json.loads(line) for line in (tmp_path / "skip" / "bad_clips.jsonl").read_text().splitlines()
    ]
    assert record["clip_id"] == clip
    with pytest.raises(StoreError, match=rf"{clip}/frames\.mp4"):
        train(stage1(root, tmp_path / "error", "data.on_bad_clip=error"))
