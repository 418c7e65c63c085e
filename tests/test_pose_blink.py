"""Stage 2: PBNet, its training module (KL warm-up, alternating GAN), `make train-stage2` and checkpoints."""

import functools

import pytest
import torch

from dawn_lightning.benchmarks import pose_blink as pose_blink_bench
from dawn_lightning.checkpoints import load_pose_blink_generator
from dawn_lightning.config import compose
from dawn_lightning.models.pose_blink.diffusion import PoseDiffusion
from dawn_lightning.models.pose_blink.discriminator import SequenceDiscriminator
from dawn_lightning.models.pose_blink.layers import band_bias
from dawn_lightning.models.pose_blink.pbnet import PBNet
from dawn_lightning.stages.pose_blink import PoseBlinkModule
from dawn_lightning.training.run import train

SMALL = {"pose_latent_dim": 16, "audio_latent_dim": 32, "ff_size": 32, "num_buckets": 16, "max_distance": 32}


def small_pbnet(**kwargs) -> PBNet:
    return PBNet(state_dim=8, audio_dim=12, **(SMALL | kwargs))


def test_shapes_and_generation_from_initial_state():
    net = small_pbnet().eval()
    x, audio, mask = torch.randn(3, 50, 8), torch.randn(3, 50, 12), torch.ones(3, 50, dtype=torch.bool)
    out = net(x, audio, mask)
    assert out["delta"].shape == (3, 50, 8) and out["mu"].shape == out["logvar"].shape == (3, 50, 32)
    states = net.generate(audio, x[:, 0], seed=1)
    assert states.shape == (3, 50, 8)
    # the initial state plus the decoder's deltas for the latents the seed draws, one per frame
    z = torch.randn(3, 50, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(states, x[:, :1] + net.decoder(x[:, 0], z, audio, mask))
    torch.testing.assert_close(net.generate(audio, x[:, 0], seed=1), states)  # deterministic for a seed
    assert not torch.equal(net.generate(audio, x[:, 0], seed=2), states)


def test_padded_frames_do_not_change_the_loss():
    torch.manual_seed(0)
    net = small_pbnet().eval()
    x, audio = torch.randn(2, 30, 8), torch.randn(2, 30, 12)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 18:] = False
    noise = torch.randn(2, 30, 32)
    torch.manual_seed(1)
    before = net.losses(x, audio, mask)
    x2, audio2 = x.clone(), audio.clone()
    x2[1, 18:], audio2[1, 18:] = 100.0, -50.0
    with torch.no_grad():
        a = net(x, audio, mask, noise)["delta"]
        b = net(x2, audio2, mask, noise)["delta"]
    torch.testing.assert_close(a, b)
    assert (b[1, 18:] == 0).all()
    assert torch.isfinite(before["reconstruction"])


def test_band_mask_equals_explicit_mask_and_limits_reach():
    bias = band_bias(9, 2)
    for i in range(9):
        for j in range(9):
            assert (bias[i, j] == 0) == (abs(i - j) <= 2)
    assert band_bias(5, 10) is None  # a sequence inside the band needs no mask
    net = small_pbnet(window=4).eval()
    x0, audio, z = torch.randn(1, 8), torch.randn(1, 60, 12), torch.randn(1, 60, 32)
    mask = torch.ones(1, 60, dtype=torch.bool)
    changed = audio.clone()
    changed[0, 0] += 5
    with torch.no_grad():
        a, b = net.decoder(x0, z, audio, mask), net.decoder(x0, z, changed, mask)
    # 5 stacked attentions (init + 2 x (self, cross)) reach at most 5 x 4 frames away
    assert not torch.allclose(a[0, :4], b[0, :4]) and torch.equal(a[0, 21:], b[0, 21:])


def test_cvae_overfits_one_window(synthetic):
    torch.manual_seed(0)
    info = synthetic.split("train")[0]
    signals = synthetic.reader(info).signals
    x = torch.cat([torch.from_numpy(signals["pose"]), torch.from_numpy(signals["blink"])], -1)[None, :40]
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-3)
    audio = torch.from_numpy(signals["audio_features"])[None, :40]
    mask = torch.ones(1, 40, dtype=torch.bool)
    net = PBNet(state_dim=8, audio_dim=80, dropout=0.0, **(SMALL | {"num_layers": 1}))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    for _ in range(150):
        terms = net.losses(x, audio, mask)
        loss = terms["reconstruction"] + 1e-4 * terms["kl"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(terms["reconstruction"].item())
    assert history[-1] < history[0] / 10


def _module(**kwargs) -> PoseBlinkModule:
    return PoseBlinkModule(small_pbnet(), functools.partial(torch.optim.AdamW, lr=1e-3), **kwargs)


def test_kl_warmup_schedule(monkeypatch):
    module = _module(kl_weight=0.01, kl_delay=10, kl_warmup=20)
    batches = {0: 0.0, 10: 0.0, 20: 0.005, 30: 0.01, 500: 0.01}
    for batch, expected in batches.items():
        monkeypatch.setattr(PoseBlinkModule, "batches_seen", property(lambda self, b=batch: b))
        assert module.kl_scale() == pytest.approx(expected)


def test_gan_steps_update_generator_and_discriminator_separately(tiny_store, monkeypatch):
    import lightning as L

    from dawn_lightning.data.datamodules import PoseBlinkDataModule

    module = PoseBlinkModule(
        PBNet(state_dim=8, audio_dim=8, **SMALL),
        functools.partial(torch.optim.AdamW, lr=1e-3),
        discriminator=SequenceDiscriminator(8),
    )
    calls = []
    original = module._step

    def recording_step(optimizer, loss, target):
        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        generator_grads = [p.grad.clone() if p.grad is not None else None for p in module.net.parameters()]
        original(optimizer, loss, target)
        changed = {n.split(".")[0] for n, p in module.named_parameters() if not torch.equal(before[n], p)}
        same_generator_grads = all(
            (g is None and p.grad is None) or (g is not None and torch.equal(g, p.grad))
            for g, p in zip(generator_grads, module.net.parameters(), strict=True)
        )
        calls.append((target is module.net, changed, same_generator_grads))

    monkeypatch.setattr(module, "_step", recording_step)
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=PoseBlinkDataModule(str(tiny_store), window=20, batch_size=3))
    (g_is_net, g_changed, _), (d_is_net, d_changed, d_left_generator_grads) = calls
    assert g_is_net and g_changed == {"net"}  # the generator step moves only the generator
    assert not d_is_net and d_changed == {"discriminator"}  # the discriminator step moves only it...
    assert d_left_generator_grads  # ...and its loss (on detached fakes) sends no gradient into the generator


def _fit_recording_steps(module: PoseBlinkModule, store, monkeypatch, batches: int) -> list[str]:
    """Train ``batches`` batches; returns which network each optimiser step moved, in order."""
    import lightning as L

    from dawn_lightning.data.datamodules import PoseBlinkDataModule

    calls = []
    original = module._step

    def recording_step(optimizer, loss, target):
        calls.append("generator" if target is module.net else "discriminator")
        original(optimizer, loss, target)

    monkeypatch.setattr(module, "_step", recording_step)
    trainer = L.Trainer(
        max_epochs=batches,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=PoseBlinkDataModule(str(store), window=20, batch_size=3))
    return calls


@pytest.mark.parametrize("gan_input", ["reconstruction", "prior"])
def test_gan_delay_keeps_the_discriminator_out_until_its_batch(tiny_store, monkeypatch, gan_input):
    discriminator = SequenceDiscriminator(8)
    initial = {k: v.clone() for k, v in discriminator.state_dict().items()}
    module = PoseBlinkModule(
        PBNet(state_dim=8, audio_dim=8, **SMALL),
        functools.partial(torch.optim.AdamW, lr=1e-3),
        discriminator=discriminator,
        gan_delay=3,
        gan_loss="lsgan",
        gan_input=gan_input,
    )
    seen = []
    original = discriminator.forward
    monkeypatch.setattr(discriminator, "forward", lambda x: seen.append(module.batches_seen) or original(x))
    calls = _fit_recording_steps(module, tiny_store, monkeypatch, batches=3)
    assert calls == ["generator"] * 3 and not seen  # batches 0-2: neither used nor updated
    assert all(torch.equal(initial[k], v) for k, v in discriminator.state_dict().items())
    module.discriminator = discriminator = SequenceDiscriminator(8)  # a new run of 5 batches: from batch 3 on
    original, seen[:] = discriminator.forward, []
    monkeypatch.setattr(discriminator, "forward", lambda x: seen.append(module.batches_seen) or original(x))
    calls = _fit_recording_steps(module, tiny_store, monkeypatch, batches=5)
    assert calls == ["generator"] * 4 + ["discriminator", "generator", "discriminator"]
    assert sorted(set(seen)) == [3, 4]


def test_gan_losses_and_options_are_checked():
    from dawn_lightning.stages.pose_blink import GAN_LOSSES

    logits = torch.tensor([0.0, 2.0])
    assert GAN_LOSSES["lsgan"](logits, True) == pytest.approx(0.5 * (1 + 1) / 2)
    assert GAN_LOSSES["lsgan"](logits, False) == pytest.approx(0.5 * (0 + 4) / 2)
    assert GAN_LOSSES["bce"](logits, True) == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2)).item()
    )
    with pytest.raises(ValueError, match="gan_loss"):
        _module(gan_loss="wasserstein")
    with pytest.raises(ValueError, match="sample_deltas"):
        PoseBlinkModule(
            PoseDiffusion(8, 12, **TINY_DIFFUSION), functools.partial(torch.optim.AdamW), gan_input="prior"
        )


def test_blink_weight_scales_only_the_blink_channels():
    module = _module(blink_weight=4.0)
    assert module.channel_weights.tolist() == [1.0] * 6 + [4.0] * 2
    pose_only = PoseBlinkModule(
        PBNet(state_dim=6, audio_dim=12, **SMALL), functools.partial(torch.optim.AdamW), signals="pose"
    )
    assert pose_only.channel_weights.tolist() == [1.0] * 6
    x, audio, mask = torch.randn(2, 30, 8), torch.randn(2, 30, 12), torch.ones(2, 30, dtype=torch.bool)
    net = module.net.eval()
    torch.manual_seed(0)
    plain = net.losses(x, audio, mask)
    torch.manual_seed(0)
    velocity_weights = torch.arange(1.0, 9.0)
    weighted = net.losses(x, audio, mask, module.channel_weights, velocity_weights)
    error = (plain["delta"] - (x - x[:, :1])) ** 2
    expected = (error[..., :6].sum() + 4 * error[..., 6:].sum()) / error.numel()
    torch.testing.assert_close(weighted["reconstruction"], expected)
    speed = (plain["delta"].diff(dim=1) - x.diff(dim=1)) ** 2
    torch.testing.assert_close(plain["velocity"], speed.mean())
    torch.testing.assert_close(weighted["velocity"], (speed * velocity_weights).mean())


def test_anchored_generators_start_at_the_initial_state():
    torch.manual_seed(0)
    audio, init = torch.randn(2, 40, 12), torch.randn(2, 8)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    diffusion = PoseDiffusion(8, 12, anchor=True, **TINY_DIFFUSION)
    flow = PoseDiffusion(8, 12, anchor=True, objective="flow", **TINY_DIFFUSION)
    for net in (small_pbnet(anchor=True), diffusion, flow):
        states = net.eval().generate(audio, init, seed=0, mask=mask)
        torch.testing.assert_close(states[:, 0], init)
        assert not torch.allclose(states[0, 1:], init[0].expand(39, -1))  # it still moves afterwards
    free = small_pbnet().eval().generate(audio, init, seed=0)
    assert not torch.allclose(free[:, 0], init)  # the reference's decoder does not start there


def test_initial_logvar_starts_the_posterior_narrow():
    net = small_pbnet(initial_logvar=-4.0)
    torch.testing.assert_close(net.encoder.sigma_layer.bias, torch.full((32,), -4.0))
    assert small_pbnet().encoder.sigma_layer.bias.abs().max() < 1


@pytest.mark.parametrize("audio_context", [None, 3])
def test_diffusion_options_ignore_padded_frames(audio_context):
    torch.manual_seed(0)
    options = {"conv_kernel": 5, "audio_dropout": 0.3, "anchor": True, "start_frames": 4}
    net = PoseDiffusion(8, 12, audio_context=audio_context, **options, **TINY_DIFFUSION).eval()
    x_t, audio = torch.randn(2, 30, 8), torch.randn(2, 30, 12)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 18:] = False
    t, init = torch.tensor([500, 20]), torch.randn(2, 8)
    changed_x, changed_audio = x_t.clone(), audio.clone()
    changed_x[1, 18:], changed_audio[1, 18:] = 50.0, -20.0
    with torch.no_grad():
        a = net.denoiser(x_t, t, audio, init, mask)
        b = net.denoiser(changed_x, t, changed_audio, init, mask)
    torch.testing.assert_close(a[:, :18], b[:, :18])
    torch.testing.assert_close(a[0], b[0])


def test_local_audio_reaches_only_its_context():
    torch.manual_seed(0)
    net = PoseDiffusion(8, 12, audio_context=3, **TINY_DIFFUSION).eval()
    torch.nn.init.normal_(net.output.weight)  # zero at initialisation
    x_t, audio, init = torch.randn(1, 40, 8), torch.randn(1, 40, 12), torch.randn(1, 8)
    mask, t = torch.ones(1, 40, dtype=torch.bool), torch.tensor([300])
    changed = audio.clone()
    changed[0, 20] += 3.0
    with torch.no_grad():
        a, b = net.denoiser(x_t, t, audio, init, mask), net.denoiser(x_t, t, changed, init, mask)
    moved = (a - b).abs().amax(-1)[0] > 0
    assert moved[17:24].all() and not moved[:17].any() and not moved[24:].any()


TINY_DIFFUSION = {"width": 32, "num_layers": 1, "ff_size": 64, "sampling_steps": 4}


def test_flow_objective_learns_the_velocity_of_the_linear_path():
    """Flow matching for stage 2: the target is noise - delta, the implied clean estimate is x_t - t v, and
    with fixed draws (the same times and noise every step) the loss of one batch falls on a tiny overfit."""
    from dawn_lightning.tensors.draws import SampleDraws

    torch.manual_seed(0)
    net = PoseDiffusion(8, 12, objective="flow", **TINY_DIFFUSION)
    x, audio = torch.randn(2, 30, 8).cumsum(1) * 0.1, torch.randn(2, 30, 12)
    mask = torch.ones(2, 30, dtype=torch.bool)
    seeds = torch.tensor([3, 4])
    terms = net.losses(x, audio, mask, draws=SampleDraws(seeds))
    assert torch.isfinite(terms["diffusion"]) and terms["delta"].shape == (2, 30, 8)
    terms["diffusion"].backward()
    assert net.output.weight.grad.abs().sum() > 0
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = net.losses(x, audio, mask, draws=SampleDraws(seeds))["diffusion"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    states = net.eval().generate(audio, x[:, 0], seed=0)
    assert states.shape == (2, 30, 8) and torch.isfinite(states).all()
    assert PoseDiffusion(**net.config).objective == "flow"  # the checkpoint's config rebuilds it
    with pytest.raises(ValueError, match="objective must be one of"):
        PoseDiffusion(8, 12, objective="score", **TINY_DIFFUSION)


@pytest.mark.parametrize(
    ("model", "signals"), [("pbnet_cpu", "both"), ("pbnet_cpu", "pose"), ("pose_diffusion", "both")]
)
def test_train_stage2_and_reload(synthetic, tmp_path, model, signals):
    cfg = compose(
        "train",
        [
            "experiment=stage2",
            f"model={model}",
            f"data.store_dir={synthetic.root}",
            f"hydra.run.dir={tmp_path}",
            f"model.signals={signals}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.check_val_every_n_epoch=1",
            "datamodule.window=40",
            "datamodule.batch_size=4",
            "logger=csv",
            "callbacks=none",
            "+callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
            f"+callbacks.checkpoint.dirpath={tmp_path}",
            "+callbacks.checkpoint.save_last=true",
        ],
    )
    for key, value in (TINY_DIFFUSION if model == "pose_diffusion" else SMALL).items():
        cfg.model.net[key] = value
    gan = model == "pbnet_cpu"
    if gan:
        cfg.model.gan_delay = 1  # batch 0: the generator alone; batch 1: generator and critic
    metric, trainer = train(cfg)
    assert trainer.global_step == (3 if gan else 2) and metric is not None
    module = trainer.lightning_module
    assert module.state_std.shape == ((8,) if signals == "both" else (6,)) and (module.state_std != 1).all()
    assert (module.velocity_std != 1).all()
    net, norm = load_pose_blink_generator(tmp_path / "last.ckpt")
    torch.testing.assert_close(norm["mean"], module.state_mean)
    audio, init = torch.randn(1, 60, 80), torch.randn(1, module.net.config["state_dim"])
    torch.testing.assert_close(
        net.generate(audio, init, seed=3), module.net.eval().generate(audio, init, seed=3)
    )
    quality = pose_blink_bench.track_quality(tmp_path / "last.ckpt", synthetic.root, window=40, samples=2)
    assert quality["split"] == "test" and quality["samples"] == 2 and quality["windows"] >= 2
    assert 0 <= quality["pose_std_generated"] < float("inf")
    assert ("blink_rate_truth" in quality) == (signals == "both")
    long = pose_blink_bench.long_generation(tmp_path / "last.ckpt", synthetic.root, window=20, factor=3)
    assert long["frames"] == 60 and long["finite"]
    with pytest.raises(ValueError, match="not a stage-2"):
        torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
        load_pose_blink_generator(tmp_path / "x.ckpt")


GOLDEN = (
    __import__("pathlib").Path(__file__).resolve().parents[2]
    / "shared"
    / "reference/golden/pbnet_small.safetensors"
)


@pytest.mark.skipif(not GOLDEN.exists(), reason="reference golden vectors not present")
@torch.no_grad()
def test_matches_reference_golden_vectors():
    from safetensors.torch import load_file

    from dawn_lightning.released.mapping import load_checked, map_pbnet

    t = load_file(GOLDEN)
    net = PBNet(
        state_dim=6,
        audio_dim=24,
        pose_latent_dim=16,
        audio_latent_dim=32,
        ff_size=32,
        num_buckets=16,
        max_distance=32,
    ).eval()
    # mapped as dawn-import-dawn maps a released PBNet's "model" entry (the file omits the position tables)
    state = {k.removeprefix("state."): v for k, v in t.items() if k.startswith("state.")}
    load_checked(net, map_pbnet(state), GOLDEN.name)
    x, y, mask = t["input.x"], t["input.y"], t["input.mask"]
    mu, logvar = net.encoder(x, y, mask)
    torch.testing.assert_close(mu, t["output.encoder.mu"].transpose(0, 1), atol=2e-5, rtol=0)
    torch.testing.assert_close(logvar, t["output.encoder.logvar"].transpose(0, 1), atol=2e-5, rtol=0)
    z = t["input.z"].transpose(0, 1)
    out = net.decoder(x[:, 0], z, y, mask, mask_keys=False)  # the reference attends to padded frames
    torch.testing.assert_close(out, t["output.decoder.output"], atol=2e-5, rtol=0)
    z = t["output.reparam.z"].transpose(0, 1)
    out = net.decoder(x[:, 0], z, y, mask, mask_keys=False)
    torch.testing.assert_close(out, t["output.decoder_on_reparam.output"], atol=2e-5, rtol=0)


def test_motion_statistics():
    from dawn_lightning.metrics.motion_stats import (
        beat_align_score,
        blink_rate,
        high_pass,
        onset_frames_from_logmel,
    )

    ramp = torch.arange(60.0)
    assert high_pass(ramp)[15:-15].abs().max() < 1e-4  # a slow drift has no fast part...
    bump = torch.zeros(60)
    bump[30:36] = 2.0
    assert high_pass(ramp + bump)[30:36].min() > 1.0  # ...a nod does

    open_eyes = torch.ones(100, 2)
    blinks = open_eyes.clone()
    blinks[10:14], blinks[60:63] = 0.1, 0.05
    assert blink_rate(open_eyes) == 0 and blink_rate(blinks) == pytest.approx(2 * 25 / 100)
    closed_at_start = open_eyes.clone()
    closed_at_start[:5] = 0.2  # a blink already under way when the window starts is not counted
    assert blink_rate(closed_at_start) == 0
    features = torch.zeros(100, 4)
    features[[20, 50, 80]] = 5.0
    assert onset_frames_from_logmel(features).tolist() == [20, 50, 80]
    assert beat_align_score(torch.tensor([20, 50]), torch.tensor([20, 50])) == 1.0
    assert beat_align_score(torch.tensor([20]), torch.tensor([40])) < 0.01
