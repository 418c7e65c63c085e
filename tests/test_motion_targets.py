"""Precomputed curriculum-A targets: what stage 1 computes on the fly, written once, read back by training."""

from __future__ import annotations

import pytest
import torch

from dawn_lightning.checkpoints import load_motion_autoencoder
from dawn_lightning.data.datasets import VideoClipDataset
from dawn_lightning.data.motion_targets import MotionTargets, precompute_motion_targets
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.transforms import frames_to_tensor
from dawn_lightning.models.audio_to_motion.motion_diffusion import motion_targets
from dawn_lightning.stages.audio_to_motion import AudioToMotionModule
from dawn_lightning.training.run import train
from tests.test_audio_to_motion import motion_ckpt, stage3_config  # noqa: F401 (a fixture)

FRAMES, STRIDE = 8, 5


@pytest.fixture(scope="module")
def targets(synthetic, motion_ckpt, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("motion") / "targets"
    counts = precompute_motion_targets(synthetic.root, motion_ckpt, out, frames=FRAMES, stride=STRIDE)
    return out, counts


def test_precomputed_targets_are_stage1s(synthetic, motion_ckpt, targets):  # noqa: F811
    out, counts = targets
    store = ClipStore(synthetic.root)
    train_clips = store.split("train")
    assert counts == {"done": len(train_clips), "skipped": 0, "failed": 0}
    info = train_clips[0]
    data = MotionTargets(out, FRAMES).clip(info.clip_id)
    assert list(data["starts"]) == list(range(0, info.num_frames - FRAMES + 1, STRIDE))
    k = 2
    start = int(data["starts"][k])
    frames = frames_to_tensor(store.reader(info).frames(range(start, start + FRAMES)))
    motion = load_motion_autoencoder(motion_ckpt)
    expected_x0, expected_z = motion_targets(motion, frames.permute(1, 0, 2, 3)[None], frames[:1])
    for name, expected in (("x0", expected_x0), ("z_src", expected_z)):  # stored as float16
        stored = torch.from_numpy(data[name][k].astype("float32"))
        torch.testing.assert_close(stored, expected[0], atol=2e-3, rtol=1e-2)


def test_a_rerun_skips_what_is_done_and_refuses_other_settings(synthetic, motion_ckpt, targets):  # noqa: F811
    out, _ = targets
    again = precompute_motion_targets(synthetic.root, motion_ckpt, out, frames=FRAMES, stride=STRIDE)
    assert again["done"] == 0 and again["skipped"] == len(ClipStore(synthetic.root).split("train"))
    with pytest.raises(ValueError, match="frames 8, stride 5.*frames 8, stride 3: use another folder"):
        precompute_motion_targets(synthetic.root, motion_ckpt, out, frames=FRAMES, stride=3)


def test_dataset_reads_targets_and_names_missing_clips(synthetic, targets, tmp_path):
    out, _ = targets
    dataset = VideoClipDataset(str(synthetic.root), "train", True, FRAMES, motion_dir=str(out))
    item = dataset[(0, 3)]
    assert "video" not in item and item["x0"].shape[:2] == (3, FRAMES) and item["x0"].dtype == torch.float32
    assert item["audio"].shape[0] == FRAMES and int(item["ref_index"]) % STRIDE == 0
    with pytest.raises(StoreError, match="targets of 8-frame clips, the data module asks for 12"):
        VideoClipDataset(str(synthetic.root), "train", True, 12, motion_dir=str(out))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "meta.json").write_text((out / "meta.json").read_text())
    with pytest.raises(
        StoreError, match=r"no motion targets for \d+ train clips .*run dawn-precompute-motion"
    ):
        VideoClipDataset(str(synthetic.root), "train", True, FRAMES, motion_dir=str(partial))


def test_stage3_trains_on_precomputed_targets_of_its_own_stage1(
    synthetic,
    motion_ckpt,  # noqa: F811
    targets,
    tmp_path,
    monkeypatch,
):
    out, _ = targets
    overrides = [
        f"datamodule.num_frames={FRAMES}",
        f"datamodule.motion_dir={out}",
        "+trainer.fast_dev_run=2",
    ]
    seen = []  # whether each training batch brought precomputed targets (and no frames)
    monkeypatch.setattr(
        AudioToMotionModule,
        "on_train_batch_start",
        lambda self, batch, index: seen.append("x0" in batch and "video" not in batch),
    )
    train(stage3_config("stage3a", synthetic.root, motion_ckpt, tmp_path / "run", overrides))
    assert seen == [True, True]
    other = tmp_path / "other.ckpt"  # the same weights in another file: another SHA-256
    torch.save({**torch.load(motion_ckpt, weights_only=True), "note": "retrained"}, other)
    with pytest.raises(
        ValueError, match="motion targets of stage 1 .* but this run's stage 1 is .*other.ckpt"
    ):
        train(stage3_config("stage3a", synthetic.root, other, tmp_path / "run2", overrides))
