"""The synthetic data set end to end: generator -> clip store -> validator -> data modules."""

import numpy as np

from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.datamodules import PoseBlinkDataModule, VideoClipDataModule
from dawn_lightning.data.store import ClipStore
from dawn_lightning.data.synthetic_store import build_synthetic_store, plan_clips, write_store_contact_sheet
from dawn_lightning.data.validate import validate_store
from tests.conftest import GENERATOR


def test_plan_is_deterministic_and_splits_by_identity():
    jobs = plan_clips(0, {"train": 3, "val": 1, "test": 2}, 2, (4.0, 8.0))
    assert jobs == plan_clips(0, {"train": 3, "val": 1, "test": 2}, 2, (4.0, 8.0))
    assert jobs != plan_clips(1, {"train": 3, "val": 1, "test": 2}, 2, (4.0, 8.0))
    splits = {}
    for job in jobs:
        splits.setdefault(job.identity, set()).add(job.split)
        assert 100 <= job.num_frames <= 200
    assert all(len(s) == 1 for s in splits.values()) and len(splits) == 6


def test_store_is_valid_and_complete(synthetic):
    assert validate_store(synthetic.root) == []
    assert synthetic.index["splits"] == {"train": 4, "val": 2, "test": 2} and synthetic.index["failed"] == []
    assert synthetic.audio_dim == 80 and synthetic.frame_size == 64
    identities = {split: {c.group for c in synthetic.split(split)} for split in ("train", "val", "test")}
    assert not identities["train"] & identities["val"] and not identities["val"] & identities["test"]


def test_rerun_resumes_and_is_deterministic(synthetic, tmp_path):
    clip_dir = synthetic.root / "clips" / synthetic.clips[0].clip_id
    before = clip_dir.stat().st_mtime_ns
    (synthetic.root / "clips" / synthetic.clips[-1].clip_id / "meta.json").unlink()  # simulate damage
    import shutil

    shutil.rmtree(synthetic.root / "clips" / synthetic.clips[-1].clip_id)
    again = build_synthetic_store(synthetic.root, 64, GENERATOR, LogMelFeatures(), workers=1)
    assert clip_dir.stat().st_mtime_ns == before  # complete clips are not redone
    assert [c.clip_id for c in again.clips] == [c.clip_id for c in synthetic.clips]
    remade = again.reader(again.clips[-1]).signals
    fresh = build_synthetic_store(tmp_path / "other", 64, GENERATOR, LogMelFeatures(), workers=1)
    np.testing.assert_array_equal(fresh.reader(fresh.clips[-1]).signals["pose"], remade["pose"])


def test_data_modules_on_synthetic_store(synthetic):
    dm = VideoClipDataModule(str(synthetic.root), mode="first", num_frames=20, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 3, 20, 64, 64) and batch["audio"].shape == (2, 20, 80)
    # boxes are normalised and the mouth lies inside the face
    face, mouth = batch["face_box"], batch["mouth_box"]
    assert ((0 <= face) & (face <= 1)).all()
    assert (mouth[..., 0] >= face[..., 0]).all() and (mouth[..., 2] <= face[..., 2]).all()
    dm = PoseBlinkDataModule(str(synthetic.root), window=40, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pose"].shape == (4, 40, 6) and batch["mask"].all()  # every clip has >= 40 frames


def test_mouth_pixels_follow_audio_features(synthetic):
    """What a stage-3 model must learn exists in the store: the decoded frames' mouth region darkens as the
    stored audio features get louder."""
    info = synthetic.split("train")[0]
    reader = synthetic.reader(info)
    frames = reader.frames(range(info.num_frames)).astype(np.float32)
    box = reader.signals["mouth_box"]
    darkness = []
    for frame, (x0, y0, x1, y1) in zip(frames, box * 64, strict=True):
        region = frame[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))]
        darkness.append((region.mean(-1) < 60).sum())
    loudness = np.log(np.exp(reader.signals["audio_features"]).sum(1))
    assert np.corrcoef(darkness, loudness)[0, 1] > 0.6


def test_contact_sheet(synthetic, tmp_path):
    from PIL import Image

    write_store_contact_sheet(ClipStore(synthetic.root), tmp_path / "sheet.png", clips=2, frames_per_clip=4)
    image = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert image.shape[0] >= 2 * 64 and image.shape[1] >= 4 * 64 and image.std() > 10
