"""Stage 3: the motion diffusion around a frozen stage-1 model, its training, checkpoints and curriculum."""

from __future__ import annotations

import io
from pathlib import Path

import av
import hydra
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import AUDIO, IMAGES, EventAccumulator

from dawn_lightning import FPS, SAMPLES_PER_FRAME
from dawn_lightning.callbacks.samples import LogSamples
from dawn_lightning.checkpoints import (
    AUDIO_TO_MOTION,
    MOTION,
    file_sha256,
    load_motion_autoencoder,
    load_motion_diffusion,
    net_state,
    read,
    save,
)
from dawn_lightning.config import compose
from dawn_lightning.data.datamodules import VideoClipDataModule
from dawn_lightning.data.datasets import VideoClipDataset
from dawn_lightning.data.store import ClipStore
from dawn_lightning.diffusion import make_sampler
from dawn_lightning.models.audio_to_motion.motion_diffusion import MotionDiffusion, motion_to_x0, x0_to_motion
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.motion.generator import warp
from dawn_lightning.stages.audio_to_motion import AudioToMotionModule
from dawn_lightning.tensors.draws import SampleDraws
from dawn_lightning.training.run import train
from dawn_lightning.training.visuals import gif_bytes, video_summary
from tests.pipeline_fixtures import UNET, write_stage3

TINY_MOTION = {
    "num_regions": 4,
    "region": {"block_expansion": 8, "max_features": 32, "num_blocks": 3},
    "background": {"block_expansion": 8, "max_features": 32, "num_blocks": 3},
    "flow": {"block_expansion": 8, "max_features": 32, "num_blocks": 3},
    "generator": {"block_expansion": 8, "max_features": 32, "num_down_blocks": 2, "num_bottleneck_blocks": 1},
}
TINY_UNET = {**UNET, "window": 6}  # the pipeline tests' tiny U-Net, with a band shorter than the clips


@pytest.fixture(scope="module")
def motion_ckpt(tmp_path_factory):
    """A stage-1 checkpoint of a tiny random motion autoencoder (its BatchNorm statistics made non-trivial, so
    train-mode BatchNorm would visibly change its outputs)."""
    torch.manual_seed(0)
    net = MotionAutoencoder(**TINY_MOTION)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("stage1") / "last.ckpt"
    return save(path, MOTION, {"config": net.config}, net_state(net))


def stage3_config(experiment, store, motion_ckpt, out_dir, extra=()):
    cfg = compose(
        "train",
        [
            f"experiment={experiment}",
            f"data.store_dir={store}",
            f"hydra.run.dir={out_dir}",
            f"model.motion_ckpt={motion_ckpt}",
            "model.num_val_videos=1",
            "model.sampler.num_steps=2",
            "datamodule.batch_size=2",
            "datamodule.val_batch_size=2",
            "datamodule.num_workers=0",
            "logger=csv",
            "callbacks=none",
            "+callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
            f"+callbacks.checkpoint.dirpath={out_dir}",
            "+callbacks.checkpoint.save_last=true",
            "++callbacks.samples._target_=dawn_lightning.callbacks.samples.LogSamples",
            *extra,
        ],
    )
    cfg.model.net.unet = dict(TINY_UNET)
    return cfg


def test_curriculum_a_then_b(synthetic, motion_ckpt, tmp_path, monkeypatch):
    # curriculum A: 20-frame clips, reference = first frame
    cfg = stage3_config(
        "stage3a",
        synthetic.root,
        motion_ckpt,
        tmp_path / "a",
        ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"],
    )
    cfg.trainer.check_val_every_n_epoch = 1
    stage1_before = torch.load(motion_ckpt, weights_only=True)["state_dict"]
    seen = []  # whether any part of the frozen stage-1 model is in train mode, at every training batch
    monkeypatch.setattr(
        AudioToMotionModule,
        "on_train_batch_start",
        lambda self, batch, index: seen.append(any(m.training for m in self.motion.modules())),
    )
    metric, trainer = train(cfg)
    module = trainer.lightning_module
    assert trainer.global_step == 2 and metric is not None and torch.isfinite(torch.tensor(metric))
    assert seen == [False, False]  # Lightning's .train() did not reach the frozen model
    for name, value in module.motion.state_dict().items():  # BatchNorm statistics and weights unchanged
        torch.testing.assert_close(value, stage1_before[f"net.{name}"], rtol=0, atol=0)
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in module.net.face_encoder.parameters())
    assert not any(id(p) in optimised for p in module.motion.parameters())

    checkpoint = torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)
    keys = checkpoint["state_dict"].keys()
    assert not any(k.startswith("motion.") for k in keys)
    assert any(k.startswith("net.face_encoder.") for k in keys)
    record = read(tmp_path / "a" / "last.ckpt", AUDIO_TO_MOTION).record
    assert record["motion_ckpt_sha256"] == file_sha256(motion_ckpt)
    assert record["frame_size"] == 64 and record["audio_features"]["kind"] == "logmel"
    assert record["store_kind"] == "synthetic"
    assert len(record["mean_face_box"]) == 4
    assert list((tmp_path / "a").rglob("videos/*.mp4")), "validation wrote no sample video"

    net, _ = load_motion_diffusion(tmp_path / "a" / "last.ckpt")
    assert bool(net.has_statistics) and (net.audio_std != 1).all()
    assert bool(net.has_motion_scale) and (net.motion_scale < 0.5).all()  # fitted: motion is a small residual
    for name, value in module.net.state_dict().items():
        torch.testing.assert_close(net.state_dict()[name], value)

    # curriculum B starts from A's weights, with random lengths in [30, 34] and a random reference frame
    cfg_b = stage3_config(
        "stage3b",
        synthetic.root,
        motion_ckpt,
        tmp_path / "b",
        [f"model.init_from={tmp_path / 'a' / 'last.ckpt'}", "debug=fast", "datamodule.num_frames=34"],
    )
    b_module = hydra.utils.instantiate(cfg_b.model)
    for name, value in module.net.state_dict().items():
        torch.testing.assert_close(b_module.net.state_dict()[name], value)
    _, trainer_b = train(cfg_b)
    assert trainer_b.global_step == 1


def tiny_module(motion_ckpt, objective: str = "diffusion", **kwargs) -> AudioToMotionModule:
    import functools

    net = functools.partial(MotionDiffusion, audio_dim=80, unet=dict(TINY_UNET), objective=objective)
    return AudioToMotionModule(net, str(motion_ckpt), functools.partial(torch.optim.Adam, lr=2e-3), **kwargs)


def clip_batch(store, frames: int = 12, size: int = 2) -> dict:
    datamodule = VideoClipDataModule(str(store), num_frames=frames, batch_size=size, check_store=False)
    datamodule.setup("validate")
    return next(iter(datamodule.val_dataloader()))


def test_motion_x0_layout_decodes_to_stage1_reconstruction(synthetic, motion_ckpt):
    module = tiny_module(motion_ckpt).eval()
    batch = clip_batch(synthetic.root, frames=5)
    x0, z_src = module.motion_x0(batch["video"], batch["reference"])
    assert x0.shape == (2, 3, 5, 16, 16) and z_src.shape[0] == 2
    assert x0.abs().max() <= 1.5 and (x0[:, 2].abs() <= 1).all()
    grid, occlusion = x0_to_motion(x0)
    torch.testing.assert_close(motion_to_x0(grid, occlusion, 2), x0)
    # decoding x0 renders what stage 1 renders for (reference, frame): the channel layout is right
    decoded = module.decode(batch["reference"], x0)
    with torch.no_grad():
        direct = module.motion(batch["reference"], batch["video"][:, :, 3])["prediction"].clamp(0, 1)
    torch.testing.assert_close(decoded[:, :, 3], direct, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("guidance", "sampler_name"), [(1.0, "ddim"), (2.0, "ddim"), (1.0, "flow_heun"), (2.0, "flow_euler")]
)
def test_sampling_is_seeded_and_any_length(synthetic, motion_ckpt, guidance, sampler_name):
    objective = "flow" if sampler_name.startswith("flow") else "diffusion"
    module = tiny_module(motion_ckpt, objective).eval()
    net = module.net
    for frames in (1, 7, 23):
        audio, pose, blink = torch.randn(2, frames, 80), torch.randn(2, frames, 6), torch.randn(2, frames, 2)
        cond = net.conditions(audio, pose, blink, pose[:, 0], blink[:, 0])
        context = net.context(torch.randn(2, net.config["z_channels"], 16, 16), torch.rand(2, 4))
        sampler = make_sampler(sampler_name, net.schedule, num_steps=3, eta=1.0)

        draws = [
            net.sample(
                sampler, context, **cond, guidance_scale=guidance, generator=torch.Generator().manual_seed(s)
            )
            for s in (0, 0, 1)
        ]
        assert draws[0].shape == (2, 3, frames, 16, 16) and torch.isfinite(draws[0]).all()
        torch.testing.assert_close(draws[1], draws[0], rtol=0, atol=0)
        assert (draws[2] - draws[0]).abs().max() > 1e-3


@pytest.mark.parametrize("objective", ["diffusion", "flow"])
def test_overfits_one_batch(synthetic, motion_ckpt, objective):
    torch.manual_seed(0)
    module = tiny_module(motion_ckpt, objective, cond_drop_prob=0.0)
    batch = clip_batch(synthetic.root, frames=4)
    with torch.no_grad():
        inputs = module.inputs(batch)
    optimizer = torch.optim.Adam(module.net.parameters(), lr=3e-3)

    def fixed_loss():  # the same noise and timesteps before and after
        with torch.no_grad():
            draws = [SampleDraws(torch.arange(2) + 2 * s) for s in range(4)]
            return sum(float(module.losses(inputs, 0.0, d)["loss"]) for d in draws)

    before = fixed_loss()
    for _ in range(60):
        loss = module.losses(inputs, 0.0)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_loss()
    assert after < 0.75 * before, (before, after)  # measured: -38% in 60 steps (diffusion), -45% (flow)


def test_a_sampler_of_the_other_objective_is_refused(motion_ckpt):
    for objective, wrong in (("flow", "ddim"), ("diffusion", "flow_euler")):
        net = tiny_module(motion_ckpt, objective).eval().net
        cond = net.conditions(
            *(torch.randn(1, 3, k) for k in (80, 6, 2)), torch.zeros(1, 6), torch.zeros(1, 2)
        )
        context = net.context(torch.randn(1, net.config["z_channels"], 16, 16), torch.rand(1, 4))
        with pytest.raises(ValueError, match=f"cannot sample a network trained with objective '{objective}'"):
            net.sample(make_sampler(wrong, net.schedule, num_steps=2), context, **cond)


def test_non_finite_gradients_skip_the_step(synthetic, motion_ckpt, tmp_path, monkeypatch):
    module = tiny_module(motion_ckpt)
    datamodule = VideoClipDataModule(str(synthetic.root), num_frames=8, batch_size=2)
    calls = []
    losses = AudioToMotionModule.losses

    def poisoned(self, inputs, drop_prob, draws=None):
        out = losses(self, inputs, drop_prob, draws)
        calls.append(1)
        if len(calls) == 1:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(AudioToMotionModule, "losses", poisoned)
    before = {k: v.clone() for k, v in module.net.named_parameters()}
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    assert int(module.skipped_steps) == 1
    for name, value in module.net.named_parameters():  # the poisoned step changed no weight
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert all(torch.isfinite(p).all() for p in module.net.parameters())


def test_residual_target_normalises_motion(motion_ckpt):
    net = tiny_module(motion_ckpt).net
    x0 = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    net.set_motion_scale(x0)
    torch.testing.assert_close(net.denormalise_motion(net.normalise_motion(x0)), x0)
    assert net.normalise_motion(x0).transpose(0, 1).reshape(3, -1).std(1).sub(1).abs().max() < 1e-4
    identity = net.denormalise_motion(torch.zeros(1, 3, 2, 16, 16))  # zero residual = no motion
    grid, occlusion = x0_to_motion(identity)
    assert (occlusion == 1).all()
    image = torch.rand(
        1, 3, 16, 16
    )  # the identity grid samples every pixel at its centre: warping is a no-op
    torch.testing.assert_close(warp(image, grid[:1]), image, atol=1e-5, rtol=0)


def gif_frames(data: bytes) -> tuple[list[np.ndarray], list[int], dict]:
    """The frames (RGB), per-frame durations (ms) and header info of an animated GIF."""
    gif = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
        durations.append(gif.info["duration"])
    return frames, durations, gif.info


def test_video_summary_is_an_animated_gif_image():
    frames = np.random.default_rng(0).integers(0, 256, (5, 8, 12, 3), dtype=np.uint8)  # 96 colours a frame
    (value,) = video_summary("val/clip", frames, fps=25).value
    assert value.tag == "val/clip"
    image = value.image
    assert (image.height, image.width, image.colorspace) == (8, 12, 3)
    assert image.encoded_image_string.startswith(b"GIF89a")
    decoded, durations, info = gif_frames(image.encoded_image_string)
    assert durations == [40] * 5 and info["loop"] == 0  # 25 fps, looping forever
    np.testing.assert_array_equal(np.stack(decoded), frames)  # under 256 colours a frame: lossless
    with pytest.raises(ValueError, match="uint8"):
        gif_bytes(frames.astype(np.float32))


def test_validation_clips_carry_their_speech(synthetic):
    frames = 8
    item = VideoClipDataset(str(synthetic.root), "val", train=False, num_frames=frames)[0]
    speech, start = item["speech"].numpy(), int(item["ref_index"])  # mode "first": the reference starts it
    assert speech.shape == (frames * SAMPLES_PER_FRAME,) and speech.dtype == np.float32
    store = ClipStore(synthetic.root)
    span = slice(start * SAMPLES_PER_FRAME, (start + frames) * SAMPLES_PER_FRAME)
    assert any(np.array_equal(store.reader(c).audio()[span], speech) for c in store.split("val"))
    assert "speech" not in VideoClipDataset(str(synthetic.root), "train", train=True, num_frames=frames)[0]


def test_validation_logs_gifs_to_tensorboard_and_mp4s_with_speech(
    synthetic, motion_ckpt, tmp_path, one_thread
):
    frames = 8
    module = tiny_module(motion_ckpt, num_val_videos=1, sampler={"num_steps": 2})
    datamodule = VideoClipDataModule(
        str(synthetic.root), num_frames=frames, batch_size=2, val_batch_size=2, check_store=False
    )
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    trainer = L.Trainer(
        logger=logger,
        callbacks=[LogSamples()],
        limit_val_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.validate(module, datamodule=datamodule)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir, size_guidance={IMAGES: 0, AUDIO: 0})
    events.Reload()
    (sound,) = events.Audio("val/clip0_truth|generated/speech")  # the speech the mouth should follow
    assert sound.sample_rate == 16_000 and sound.length_frames == frames * SAMPLES_PER_FRAME
    assert sound.encoded_audio_string.startswith(b"RIFF")  # a wav
    (event,) = events.Images("val/clip0_truth|generated")
    assert event.encoded_image_string.startswith(b"GIF89a")
    assert (event.height, event.width) == (64, 128)  # truth | generated, side by side
    decoded, durations, _ = gif_frames(event.encoded_image_string)
    assert len(decoded) > 1 and sum(durations) == frames * 1000 // FPS  # (identical neighbours merge)

    (mp4,) = Path(logger.log_dir).glob("videos/step*_clip0.mp4")
    with av.open(str(mp4)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.frames == frames and audio.rate == 16_000
        assert abs(float(audio.duration * audio.time_base) - frames / FPS) <= 1 / FPS
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio)])
    assert np.abs(samples).max() > 1e-3  # the clip's speech, not silence
    assert not list(mp4.parent.glob(".*tmp"))  # the atomic write left no temporary file


def test_a_student_distils_the_guided_teacher(synthetic, motion_ckpt, tmp_path):
    """Guidance distillation: the flow student starts as the teacher, learns its guided velocity (the loss
    falls on a batch), and keeps no copy of the teacher in its weights."""
    import functools

    motion = load_motion_autoencoder(motion_ckpt)
    write_stage3(tmp_path / "teacher.ckpt", motion_ckpt, motion.z_channels)
    net = functools.partial(MotionDiffusion, audio_dim=80, unet=dict(UNET), objective="flow")
    optimizer = functools.partial(torch.optim.Adam, lr=2e-3)
    student = AudioToMotionModule(net, str(motion_ckpt), optimizer, teacher=str(tmp_path / "teacher.ckpt"))
    teacher, _ = load_motion_diffusion(tmp_path / "teacher.ckpt")
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in student.net.state_dict().items())
    assert not any(k.startswith("_teacher") or "teacher" in k for k in student.state_dict())
    with torch.no_grad():
        inputs = student.inputs(clip_batch(synthetic.root, frames=4))
    fixed = [SampleDraws(torch.arange(2) + 2 * s) for s in range(3)]

    def fixed_loss():
        with torch.no_grad():
            return sum(float(student.losses(inputs, 0.0, d)["denoise"]) for d in fixed)

    before = fixed_loss()
    adam = torch.optim.Adam(student.net.parameters(), lr=2e-3)
    for _ in range(25):
        loss = student.losses(inputs, 0.0)["loss"]
        adam.zero_grad()
        loss.backward()
        adam.step()
    assert fixed_loss() < 0.8 * before
    with pytest.raises(ValueError, match="a distilled student is a flow network"):
        AudioToMotionModule(
            functools.partial(MotionDiffusion, audio_dim=80, unet=dict(UNET)),
            str(motion_ckpt),
            optimizer,
            teacher=str(tmp_path / "teacher.ckpt"),
        )
