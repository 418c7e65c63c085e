"""EMA of the stage-2 and stage-3 weights: averaged as configured, saved beside the raw weights, restored on
resume, and the weights that the loaders and `DawnPipeline` use by default."""

from __future__ import annotations

import pytest
import torch

from dawn_lightning.callbacks.ema import EMA, ema_average
from dawn_lightning.checkpoints import load_motion_diffusion, load_pose_blink_generator
from dawn_lightning.config import compose
from dawn_lightning.pipeline import DawnPipeline
from dawn_lightning.training.run import train
from tests.pipeline_fixtures import tiny_checkpoints
from tests.test_audio_to_motion import motion_ckpt, stage3_config  # noqa: F401 (a fixture)

TINY_DIFFUSION = {"width": 32, "num_layers": 1, "ff_size": 64, "sampling_steps": 2}


def test_ema_average_warms_up_and_keeps_constants_exact():
    average, current = torch.zeros(3), torch.ones(3)
    # after n updates the decay is min(decay, (1 + n) / (10 + n)): 2 / 11 after the first
    torch.testing.assert_close(
        ema_average(average, current, torch.tensor(1), 0.999, True), torch.full((3,), 9 / 11)
    )
    torch.testing.assert_close(
        ema_average(average, current, torch.tensor(10**6), 0.9, True), torch.full((3,), 0.1)
    )
    torch.testing.assert_close(
        ema_average(average, current, torch.tensor(1), 0.9, False), torch.full((3,), 0.1)
    )
    frozen = torch.randn(1000)
    assert torch.equal(ema_average(frozen.clone(), frozen, torch.tensor(5), 0.999, True), frozen)
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.0)


def stage2_config(store, out_dir, extra=()):
    cfg = compose(
        "train",
        [
            "experiment=stage2",
            f"data.store_dir={store}",
            f"hydra.run.dir={out_dir}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=1",
            "trainer.check_val_every_n_epoch=1",
            "+trainer.enable_progress_bar=false",
            "datamodule.window=40",
            "datamodule.batch_size=4",
            "logger=csv",
            "~callbacks.rich_progress_bar",
            *extra,
        ],
    )
    cfg.model.net.update(TINY_DIFFUSION)
    return cfg


def test_stage2_ema_is_saved_validated_and_generated_with(synthetic, tmp_path):
    cfg = stage2_config(synthetic.root, tmp_path / "run", ["callbacks.ema.decay=0.5"])
    assert cfg.callbacks.ema._target_.endswith("EMA")  # experiment=stage2 keeps an average by default
    _, trainer = train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert ema.keys() == raw.keys() and checkpoint["averaging_state"]["n_averaged"] == 4
    net_keys = [k for k in ema if k.startswith("net.")]
    assert any(not torch.equal(ema[k], raw[k]) for k in net_keys)
    assert all(torch.equal(ema[k], raw[k]) for k in ("state_mean", "state_std", "velocity_std"))
    # the module ends with its raw weights (the average lives in the callback); the loaders read the average
    module = trainer.lightning_module
    for name, value in module.net.state_dict().items():
        assert torch.equal(value, raw[f"net.{name}"])
    loaded, _ = load_pose_blink_generator(last)
    loaded_raw, _ = load_pose_blink_generator(last, ema=False)
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, ema[f"net.{name}"]) and torch.equal(
            loaded_raw.state_dict()[name], raw[f"net.{name}"]
        )
    paths = tiny_checkpoints(tmp_path / "tiny")
    for use_ema, weights in ((True, ema), (False, raw)):
        pipeline = DawnPipeline.from_checkpoints(paths["motion"], last, paths["diffusion"], ema=use_ema)
        for name, value in pipeline.pose_blink.state_dict().items():
            assert torch.equal(value, weights[f"net.{name}"])


def test_stage3_ema_leaves_stage1_out_and_resumes(synthetic, motion_ckpt, tmp_path):  # noqa: F811
    extra = ["callbacks=ema", "~callbacks.rich_progress_bar", "~callbacks.last_checkpoint"]
    extra += ["callbacks.model_checkpoint.save_last=true", "+trainer.enable_progress_bar=false"]
    extra += ["trainer.max_steps=2", "trainer.limit_val_batches=1", "callbacks.ema.decay=0.5"]
    _, first = train(stage3_config("stage3a", synthetic.root, motion_ckpt, tmp_path / "a", extra))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    for key in ("state_dict", "current_model_state"):
        assert not any(k.startswith("motion.") for k in checkpoint[key])  # the frozen stage 1 is not copied
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(ema[k], raw[k]) for k in ema if k.startswith("net."))
    for use_ema, weights in ((True, ema), (False, raw)):
        net, _ = load_motion_diffusion(last, ema=use_ema)
        assert all(torch.equal(v, weights[f"net.{k}"]) for k, v in net.state_dict().items())
    # resuming restores the raw weights into the module and the average into the callback
    cfg = stage3_config("stage3a", synthetic.root, motion_ckpt, tmp_path / "b", extra)
    cfg.trainer.max_steps, cfg.ckpt_path = 3, str(last)
    _, resumed = train(cfg)
    callback = next(c for c in resumed.callbacks if isinstance(c, EMA))
    assert resumed.global_step == 3 and int(callback._average_model.n_averaged) == 3
