"""Stage 1: the motion autoencoder's API, its training signal, `dawn-train experiment=stage1`, checkpoints."""

import functools

import pytest
import torch

from dawn_lightning.checkpoints import MOTION, load_motion_autoencoder, net_state, read, save
from dawn_lightning.config import compose
from dawn_lightning.data.transforms import frames_to_tensor
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.motion.geometry import coordinate_grid
from dawn_lightning.stages.motion import MotionAutoencoderModule
from dawn_lightning.tensors.boxes import box_mask
from dawn_lightning.training.run import train

TINY = {"block_expansion": 8, "max_features": 32, "num_blocks": 3}


def tiny_net(**kwargs) -> MotionAutoencoder:
    generator = {"block_expansion": 8, "max_features": 32, "num_down_blocks": 2, "num_bottleneck_blocks": 1}
    return MotionAutoencoder(region=TINY, background=TINY, flow=TINY, generator=generator, **kwargs)


def tiny_module(**kwargs) -> MotionAutoencoderModule:
    return MotionAutoencoderModule(
        tiny_net(), functools.partial(torch.optim.Adam, lr=2e-3), perceptual_scales=(1.0, 0.5), **kwargs
    )


@pytest.mark.parametrize("size", [64, 128])
def test_shapes(size):
    net = tiny_net().eval()
    source, driving = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
    h = size // 4
    motion = net.motion(source, driving)
    assert motion["grid"].shape == (2, h, h, 2) and motion["occlusion"].shape == (2, 1, h, h)
    assert ((0 <= motion["occlusion"]) & (motion["occlusion"] <= 1)).all()
    assert net.encode(source).z.shape == (2, net.z_channels, h, h) == (2, 32, h, h)
    out = net(source, driving)
    assert out["prediction"].shape == (2, 3, size, size) and out["source_regions"]["heatmap"].shape == (
        2,
        10,
        h,
        h,
    )
    frames = net.decode(source[:1], motion["grid"].repeat(3, 1, 1, 1), motion["occlusion"].repeat(3, 1, 1, 1))
    assert frames.shape == (6, 3, size, size) and 0 <= frames.min() and frames.max() <= 1


@torch.no_grad()
def test_batched_decode_equals_frame_by_frame():
    net = tiny_net().eval()
    source = torch.rand(1, 3, 64, 64)
    grid = coordinate_grid(16, 16)[None].repeat(7, 1, 1, 1) + 0.05 * torch.randn(7, 16, 16, 2)
    occlusion = torch.rand(7, 1, 16, 16)
    encoding = net.encode(source)
    one_by_one = torch.cat([net.decode(encoding, grid[i : i + 1], occlusion[i : i + 1]) for i in range(7)])
    torch.testing.assert_close(net.decode(source, grid, occlusion, batch_size=3), one_by_one)
    with pytest.raises(ValueError, match="2 sources for 7 grids"):
        net.decode(source.repeat(2, 1, 1, 1), grid, occlusion)


def _pair_batch(synthetic, count=4):
    info = synthetic.split("train")[0]
    frames = frames_to_tensor(synthetic.reader(info).frames(range(0, 8 * count, 4)))
    return {"source": frames[0::2], "driving": frames[1::2]}


def test_gradients_reach_every_trainable_parameter(synthetic):
    module = tiny_module()
    batch = _pair_batch(synthetic)
    # the background head starts as the identity with zero weights, so its encoder learns from step 2 on
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-3)
    module.losses(batch)[0]["loss"].backward()
    assert module.net.bg_predictor.fc.weight.grad.abs().sum() > 0
    optimizer.step()
    optimizer.zero_grad()
    losses, _ = module.losses(batch)
    assert set(losses) == {"perceptual", "equivariance_shift", "equivariance_affine", "loss"}
    losses["loss"].backward()
    missing = [n for n, p in module.net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_mouth_loss_counts_only_the_mouth_box():
    torch.manual_seed(0)
    module = tiny_module(mouth_weight=4.0, mouth_margin=0.0, equivariance_shift=0, equivariance_affine=0)
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    box = torch.tensor([[0.25, 0.5, 0.75, 0.75]] * 2)
    losses, out = module.losses({"source": source, "driving": driving, "driving_mouth_box": box})
    mask = box_mask(box, 64, margin=0.0)
    assert mask.sum() == 2 * 32 * 16  # 32 x 16 pixels of each 64 x 64 frame
    expected = 4.0 * ((out["prediction"] - driving).abs() * mask).sum() / (3 * mask.sum())
    torch.testing.assert_close(losses["mouth_l1"], expected)


def test_mouth_region_term_trains_the_region_predictor_only():
    torch.manual_seed(0)
    module = tiny_module(mouth_region_weight=10.0, equivariance_shift=0, equivariance_affine=0)
    batch = {
        "source": torch.rand(2, 3, 64, 64),
        "driving": torch.rand(2, 3, 64, 64),
        "driving_mouth_box": torch.tensor([[0.4, 0.55, 0.6, 0.65]] * 2),
    }
    losses, _ = module.losses(batch)
    assert losses["mouth_region"] > 0
    losses["mouth_region"].backward()
    grads = {n: p.grad for n, p in module.net.named_parameters()}
    regions = {n: g for n, g in grads.items() if n.startswith("region_predictor.")}
    assert all(g is None for n, g in grads.items() if n not in regions)
    assert any(g is not None and g.abs().sum() > 0 for g in regions.values())


def test_overfit_reconstructs_and_keeps_identity_motion(synthetic):
    torch.manual_seed(0)
    module = tiny_module(equivariance_shift=0.0, equivariance_affine=0.0)
    batch = _pair_batch(synthetic)
    optimizer = torch.optim.Adam(module.net.parameters(), lr=2e-3)
    history = []
    for _ in range(40):
        loss = module.losses(batch)[0]["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0]
    module.net.eval()
    with torch.no_grad():
        source = batch["source"]
        motion = module.net.motion(source, source)
        identity = coordinate_grid(16, 16)[None]
        # the background predictor has learnt non-trivial motions; a frame with itself still maps to itself,
        # within half a pixel of the 16 x 16 grid on average (one pixel = 2 / 15 in grid units)
        assert (motion["grid"] - identity).abs().mean() < 0.5 * 2 / 15
        assert (
            module.net.bg_predictor(source, batch["driving"])[:, :2] - torch.eye(3)[:2]
        ).abs().max() > 1e-3


def test_train_stage1_and_reload_checkpoint(synthetic, tmp_path):
    cfg = compose(
        "train",
        [
            "experiment=stage1",
            f"data.store_dir={synthetic.root}",
            f"hydra.run.dir={tmp_path}",
            "trainer.limit_train_batches=2",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=1",
            "datamodule.batch_size=4",
            "datamodule.num_workers=0",
            "callbacks=none",
            "+callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
            f"+callbacks.checkpoint.dirpath={tmp_path}",
            "+callbacks.checkpoint.save_last=true",
            "logger=csv",
        ],
    )
    metric, trainer = train(cfg)
    assert trainer.global_step == 2 and metric is not None and 5 < metric < 60  # val/psnr in dB
    net = load_motion_autoencoder(tmp_path / "last.ckpt")
    assert not net.training and net.z_channels == 128
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert not any(k.startswith(("perceptual.", "val_metrics.")) for k in checkpoint["state_dict"])
    trained = trainer.lightning_module.net.eval()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(source, driving)["prediction"], trained(source, driving)["prediction"])
    # the whole training state resumes from the same file
    module = MotionAutoencoderModule.load_from_checkpoint(
        tmp_path / "last.ckpt",
        net=MotionAutoencoder(**read(tmp_path / "last.ckpt", MOTION).record["config"]),
        optimizer=functools.partial(torch.optim.Adam),
        weights_only=True,
    )
    assert module.hparams.perceptual_scales == [1.0, 0.5, 0.25]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="make train-stage1"):
        load_motion_autoencoder(tmp_path / "none.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a stage-1"):
        load_motion_autoencoder(tmp_path / "other.ckpt")


def test_benchmark_functions_run(synthetic, tmp_path):
    from dawn_lightning.benchmarks import motion

    decode = motion.decode_throughput("motion_64", 64, frames=4, batch_sizes=(2,))
    assert decode["loop_reencode_ms"] > 0 and decode["batch2_ms"] > 0
    net = tiny_net()
    save(tmp_path / "tiny.ckpt", MOTION, {"config": net.config}, net_state(net))
    quality = motion.reconstruction_quality(tmp_path / "tiny.ckpt", str(synthetic.root), pairs_per_clip=2)
    assert quality["pairs"] == 4 and 5 < quality["psnr_copy"] < 60 and 0 < quality["psnr_model"] < 60


def test_up_block_doubles_as_nearest_interpolation():
    """UpBlock2d's broadcast copy is F.interpolate's nearest 2x: conv -> BN -> ReLU sees the same input."""
    from dawn_lightning.models.common.blocks import SameBlock2d, UpBlock2d

    torch.manual_seed(0)
    block, x = UpBlock2d(4, 6).eval(), torch.randn(2, 4, 5, 7)
    expected = SameBlock2d.forward(block, torch.nn.functional.interpolate(x, scale_factor=2.0))
    assert torch.equal(block(x), expected) and block(x).shape == (2, 6, 10, 14)
