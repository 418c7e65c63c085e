import numpy as np
import pytest
import torch

from dawn_lightning.data.datamodules import FramePairDataModule, PoseBlinkDataModule, VideoClipDataModule
from dawn_lightning.data.datasets import FramePairDataset, VideoClipDataset
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.store_writer import build_index
from dawn_lightning.data.transforms import PairAugment, frames_to_tensor
from dawn_lightning.tensors.boxes import box_mask


def test_frame_pairs(tiny_store):
    dm = FramePairDataModule(str(tiny_store), batch_size=4, samples_per_clip=4, augment=PairAugment())
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"source", "driving", "driving_mouth_box", "seed"}  # seed: of the model's draws
    for key in ("source", "driving"):
        assert batch[key].shape == (4, 3, 32, 32) and batch[key].dtype == torch.float32
        assert 0 <= batch[key].min() and batch[key].max() <= 1
    assert batch["driving_mouth_box"].shape == (4, 4)
    assert not torch.equal(batch["source"], batch["driving"])
    assert len(dm.datasets["train"]) == 3 * 4


def test_frame_pairs_validation_is_deterministic_and_unaugmented(tiny_store):
    a = FramePairDataset(str(tiny_store), "val", train=False, seed=3, augment=PairAugment())
    b = FramePairDataset(str(tiny_store), "val", train=False, seed=3)
    assert a.augment is None
    torch.testing.assert_close(a[0]["source"], b[0]["source"])
    # the unaugmented pair is exactly two decoded frames of the clip
    store = ClipStore(tiny_store)
    reader = store.reader(store.split("val")[0])
    frames = frames_to_tensor(reader.frames(range(reader.info.num_frames)))
    driving = next(i for i, f in enumerate(frames) if torch.equal(a[0]["driving"], f))
    # the box is the driving frame's mouth box
    torch.testing.assert_close(
        a[0]["driving_mouth_box"], torch.from_numpy(reader.signals["mouth_box"][driving])
    )


def test_pair_augment_mirrors_and_swaps_boxes_with_frames():
    pair = torch.zeros(2, 3, 8, 8)
    pair[1, :, 1:3, 0:2] = 1  # the second frame's box: x 0-0.25, y 0.125-0.375
    boxes = torch.tensor([[0.5, 0.5, 0.75, 0.75], [0.0, 0.125, 0.25, 0.375]])
    flip_only = PairAugment(hflip=1.0, time_flip=0.0, brightness=0, contrast=0, saturation=0, hue=0)
    flipped, flipped_boxes = flip_only(pair, boxes, np.random.default_rng(0))
    torch.testing.assert_close(flipped_boxes[1], torch.tensor([0.75, 0.125, 1.0, 0.375]))
    mask = box_mask(flipped_boxes[1:], 8, margin=0.0)[0, 0]
    assert torch.equal(mask.bool(), flipped[1, 0].bool())  # the mirrored box covers the mirrored pixels
    swap_only = PairAugment(hflip=0.0, time_flip=1.0, brightness=0, contrast=0, saturation=0, hue=0)
    swapped, swapped_boxes = swap_only(pair, boxes, np.random.default_rng(0))
    assert torch.equal(swapped[0], pair[1]) and torch.equal(swapped_boxes, boxes.flip(0))


def occupied(mask: torch.Tensor) -> tuple[list[int], list[int]]:
    """The rows and columns of a (1, 1, S, S) mask that hold a cell."""
    cells = mask[0, 0].bool()
    return cells.any(1).nonzero().flatten().tolist(), cells.any(0).nonzero().flatten().tolist()


def test_covering_box_mask_keeps_every_cell_the_box_reaches():
    box = torch.tensor([[6.5, 9.1, 9.2, 10.1]]) / 16  # a synthetic mouth box, in cells of a 16 x 16 grid
    assert occupied(box_mask(box, 16, margin=0.0))[0] == [9]  # centres only: the lower lip's row 10 is missed
    assert occupied(box_mask(box, 16, margin=0.0, cover=True)) == ([9, 10], [6, 7, 8, 9])
    grown = box_mask(box, 16, margin=0.25, cover=True)  # grown by 0.25 cell each side
    assert occupied(grown)[0] == [8, 9, 10]
    inside_one_cell = torch.tensor([[6.6, 9.6, 6.9, 9.9]]) / 16
    assert box_mask(inside_one_cell, 16, margin=0.0).sum() == 0
    assert occupied(box_mask(inside_one_cell, 16, margin=0.0, cover=True)) == ([9], [6])


def test_training_samples_are_a_function_of_seed_epoch_and_index(tiny_store):
    dataset = FramePairDataset(str(tiny_store), "train", train=True, augment=PairAugment())
    torch.manual_seed(7)
    first = dataset[(0, 1)]["source"]
    torch.manual_seed(8)  # the global RNG plays no part, and is left as it was
    state = torch.get_rng_state()
    torch.testing.assert_close(dataset[(0, 1)]["source"], first)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(dataset[(1, 1)]["source"], first)  # drawn again the next epoch
    other_seed = FramePairDataset(str(tiny_store), "train", train=True, seed=1, augment=PairAugment())
    assert not torch.equal(other_seed[(0, 1)]["source"], first)


def test_workers_open_their_own_readers(tiny_store):
    dm = FramePairDataModule(str(tiny_store), batch_size=2, num_workers=2, samples_per_clip=2)
    dm.setup("fit")
    dm.datasets["train"][0]  # opens a decoder in the main process: workers must not reuse it
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(b["source"].shape == (2, 3, 32, 32) for b in batches)


def test_pose_blink_windows_pad_and_mask(tiny_store):
    dm = PoseBlinkDataModule(str(tiny_store), window=40, batch_size=3, samples_per_clip=1)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (3, 40, 8) and batch["pose"].shape == (3, 40, 6)
    assert batch["blink"].shape == (3, 40, 2) and batch["mask"].dtype == torch.bool
    lengths = sorted(batch["mask"].sum(1).tolist())
    assert lengths == [12, 30, 40]  # clip c (12 frames) padded, a (30) padded, b (45) cropped
    for name in ("audio", "pose", "blink"):
        assert (batch[name][~batch["mask"]] == 0).all()

    # evaluation tiles every clip once: the masks cover exactly the split's frames
    dm = PoseBlinkDataModule(str(tiny_store), window=10, batch_size=2)
    dm.setup("validate")
    covered = sum(int(b["mask"].sum()) for b in dm.val_dataloader())
    assert covered == sum(c.num_frames for c in ClipStore(tiny_store).split("val"))


def test_stage3_mode_first(tiny_store):
    dm = VideoClipDataModule(str(tiny_store), mode="first", num_frames=20, batch_size=2)
    dm.setup("fit")
    assert {c.clip_id for c in dm.datasets["train"].clips} == {"a", "b"}  # c is too short
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 3, 20, 32, 32) and batch["reference"].shape == (2, 3, 32, 32)
    assert batch["audio"].shape == (2, 20, 8) and batch["mouth_box"].shape == (2, 20, 4)
    torch.testing.assert_close(batch["reference"], batch["video"][:, :, 0])
    torch.testing.assert_close(batch["ref_pose"], batch["pose"][:, 0])
    torch.testing.assert_close(batch["ref_face_box"], batch["face_box"][:, 0])


def test_stage3_mode_random_lengths_and_references(tiny_store):
    dm = VideoClipDataModule(
        str(tiny_store), mode="random", num_frames=24, min_frames=10, batch_size=1, samples_per_clip=10
    )
    dm.setup("fit")
    torch.manual_seed(0)
    lengths, outside = set(), 0
    store = ClipStore(tiny_store)
    readers = {c.num_frames: store.reader(c) for c in store.split("train")}
    for batch in dm.train_dataloader():
        length = batch["video"].shape[2]
        assert 10 <= length <= 24
        assert all(batch[k].shape[1] == length for k in ("audio", "pose", "blink", "face_box", "mouth_box"))
        lengths.add(length)
        ref = int(batch["ref_index"])
        # the reference is the video's frame ref_index, taken anywhere in the whole video
        reader = next(
            r
            for n, r in readers.items()
            if ref < n and torch.equal(frames_to_tensor(r.frames([ref]))[0], batch["reference"][0])
        )
        np.testing.assert_array_equal(batch["ref_pose"][0].numpy(), reader.signals["pose"][ref])
        outside += ref >= 24
    assert len(lengths) > 3 and outside > 0
    # validation keeps the full length
    assert next(iter(dm.val_dataloader()))["video"].shape[2] == 24


def test_clear_errors_on_empty_or_invalid_store(tiny_store, tmp_path):
    with pytest.raises(StoreError, match="clip store not found"):
        FramePairDataModule(str(tmp_path / "missing")).setup("fit")
    with pytest.raises(StoreError, match="split 'train' has no clips of at least 100 frames"):
        VideoClipDataset(str(tiny_store), "train", train=True, num_frames=100)
    (tiny_store / "clips/a/signals.npz").unlink()
    build_index(tiny_store)  # the fast checks run when the index is written; setup reads what they found
    with pytest.raises(StoreError, match=r"(?s)invalid clip store \(1 problems.*a: .*signals.npz: missing"):
        FramePairDataModule(str(tiny_store)).setup("fit")


def test_the_index_statistics_are_those_of_every_training_frame(tiny_store):
    """What the stages normalise with, computed once at the index: the mean and std (unbiased) of every
    training frame, and the std of frame-to-frame differences, as from the clips themselves."""
    store = ClipStore(tiny_store)
    stats = FramePairDataModule(str(tiny_store)).train_statistics()
    readers = [store.reader(c) for c in store.split("train")]
    for name in ("audio_features", "pose", "blink", "face_box", "mouth_box"):
        frames = torch.cat([torch.from_numpy(r.signals[name]).double() for r in readers])
        steps = torch.cat([torch.from_numpy(r.signals[name]).double().diff(dim=0) for r in readers])
        torch.testing.assert_close(stats[name]["mean"], frames.mean(0).float(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(stats[name]["std"], frames.std(0).float(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(stats[name]["diff_std"], steps.std(0).float(), rtol=1e-6, atol=1e-6)


def test_setup_reads_the_index_and_nothing_per_clip(tiny_store, monkeypatch):
    """A training process's start-up does not grow with the store: no clip file is opened."""
    import builtins

    opened, real_open, real_load = [], builtins.open, np.load
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    monkeypatch.setattr(np, "load", lambda f, *a, **k: opened.append(str(f)) or real_load(f, *a, **k))
    dm = PoseBlinkDataModule(str(tiny_store), window=10)
    dm.setup("fit")
    dm.train_statistics()
    assert not [f for f in opened if "/clips/" in f]
