"""The SyncNet trainer: a short CPU run on a small synthetic store separates in-sync from shifted windows of
held-out identities, its checkpoint loads for LSE, and a wrong file gives a clear error."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from dawn_lightning.checkpoints import load_compact_syncnet
from dawn_lightning.data.sync_pairs import RenderingDegradation, SyncPairDataModule
from dawn_lightning.metrics.lse import sync_scores
from dawn_lightning.models.syncnet import CompactSyncNet
from dawn_lightning.stages.syncnet import SyncNetModule


def held_out_accuracy(net: CompactSyncNet, dataset) -> float:
    batch = default_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        lips = net.forward_lip(batch["lips"])
        synced, shifted = net.forward_aud(batch["synced"]), net.forward_aud(batch["shifted"])
    return float(((lips - synced).norm(dim=1) < (lips - shifted).norm(dim=1)).float().mean())


@pytest.mark.slow
def test_syncnet_trainer_separates_synced_from_shifted_windows(synthetic, tmp_path, one_thread):
    torch.manual_seed(0)
    datamodule = SyncPairDataModule(
        str(synthetic.root), crop_size=24, batch_size=32, samples_per_clip=64, check_store=False, seed=0
    )
    net = CompactSyncNet(dim=32, width=16, crop_size=24)
    module = SyncNetModule(net, optimizer=lambda params: torch.optim.AdamW(params, lr=2e-3))
    trainer = L.Trainer(
        max_epochs=30,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=datamodule)
    net.eval()
    assert net.crop_box.tolist() == pytest.approx(datamodule.crop_box)
    accuracy = held_out_accuracy(net, datamodule.make_dataset("val", train=False))
    assert accuracy > 0.65  # chance: 0.5 (128 pairs: std 0.044); 0.70-0.76 over model seeds 0 and 1

    path = tmp_path / "syncnet.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_compact_syncnet(path)
    store = datamodule.store
    reader = store.reader(store.split("test")[0])
    frames, audio = reader.frames(range(reader.info.num_frames)), reader.audio()
    assert sync_scores(loaded, frames, audio) == pytest.approx(sync_scores(net, frames, audio))

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"other\.ckpt is not a `make train-syncnet` checkpoint"):
        load_compact_syncnet(tmp_path / "other.ckpt")


def test_training_lips_are_degraded_by_each_samples_own_draw(synthetic):
    settings = {"blur": [0.5, 1.5], "blur_prob": 1.0, "rescale_prob": 1.0, "noise": 0.04}
    plain = SyncPairDataModule(str(synthetic.root), crop_size=24, samples_per_clip=4, check_store=False)
    degraded = SyncPairDataModule(
        str(synthetic.root), crop_size=24, samples_per_clip=4, check_store=False, degrade=settings
    )
    for dm in (plain, degraded):
        dm.setup("fit")
    key = (2, 5)
    clean, damaged = plain.datasets["train"][key], degraded.datasets["train"][key]
    assert torch.equal(clean["synced"], damaged["synced"]) and clean["shift"] == damaged["shift"]
    assert damaged["lips"].shape == clean["lips"].shape and damaged["lips"].abs().max() <= 1
    change = (damaged["lips"] - clean["lips"]).abs().mean()
    assert 0.01 < change < 0.3  # damaged, still the same mouth
    torch.testing.assert_close(degraded.datasets["train"][key]["lips"], damaged["lips"], rtol=0, atol=0)
    # blur lowers the frame-to-frame detail; validation windows stay clean
    assert damaged["lips"].diff(dim=-1).abs().mean() < clean["lips"].diff(dim=-1).abs().mean()
    torch.testing.assert_close(degraded.datasets["val"][0]["lips"], plain.datasets["val"][0]["lips"])


def test_weaker_mouth_keeps_a_drawn_fraction_of_the_lips_difference_from_rest():
    weaker = RenderingDegradation(
        blur_prob=0.0, rescale_prob=0.0, noise=0.0, attenuate=(0.4, 0.4), attenuate_prob=1
    )
    lips, rest = torch.rand(3, 5, 8, 8) * 2 - 1, torch.rand(3, 8, 8) * 2 - 1
    out = weaker(lips, np.random.default_rng(0), rest)
    torch.testing.assert_close(out, rest[:, None] + 0.4 * (lips - rest[:, None]))
    # the movement between frames shrinks by the same fraction
    torch.testing.assert_close(out.diff(dim=1), 0.4 * lips.diff(dim=1))
