"""Diffusion maths: schedules against the DAWN reference's buffers, conversions, samplers, guidance."""

import math
from pathlib import Path

import pytest
import torch

from dawn_lightning.diffusion import (
    PREDICTIONS,
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    NoiseSchedule,
    dynamic_threshold,
    guided_denoiser,
    posterior_coefficients,
    predict,
    process_x0,
    sampling_timesteps,
    target,
    training_terms,
)

GOLDEN = Path(__file__).resolve().parents[2] / "shared/reference/golden/unet3d_small.safetensors"
needs_golden = pytest.mark.skipif(not GOLDEN.exists(), reason="reference golden vectors not present")
SHAPE = (2, 3, 4, 5, 5)  # (B, C, F, h, w)


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule("cosine", 1000)


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    return load_file(GOLDEN)


def ideal_denoiser(schedule, x0_star, prediction):
    """The exact denoiser of the one-point data distribution {x0_star}, in the given parametrization."""

    def denoise(x_t, t):
        alpha, sigma = schedule.alpha_sigma(t, x_t.ndim)
        eps = (x_t - alpha * x0_star) / sigma
        return target(prediction, x0_star.expand_as(x_t), eps, alpha, sigma)

    return denoise


# --- schedules -------------------------------------------------------------------------------------------


@needs_golden
def test_schedule_matches_reference_buffers(schedule, golden):
    for name in ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod"):
        torch.testing.assert_close(getattr(schedule, name), golden[f"diffusion.{name}"], rtol=0, atol=1e-6)
    # The reference's other buffers are derived ones; rebuild them from our float64 alpha_bar and compare.
    alpha_bar = torch.tensor([schedule.alpha_bar(t) for t in range(-1, 1000)], dtype=torch.float64)
    prev, cur = alpha_bar[:-1], alpha_bar[1:]
    c_x0, c_xt, var = posterior_coefficients(cur, prev)
    derived = {
        "alphas_cumprod_prev": prev,
        "sqrt_recip_alphas_cumprod": cur.rsqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / cur - 1).sqrt(),
        "log_one_minus_alphas_cumprod": torch.log1p(-cur),
        "posterior_mean_coef1": c_x0,
        "posterior_mean_coef2": c_xt,
        "posterior_variance": var,
        "posterior_log_variance_clipped": var.clamp(min=1e-20).log(),
    }
    for name, value in derived.items():
        torch.testing.assert_close(value.float(), golden[f"diffusion.{name}"], rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_alpha_bar_decreasing_in_unit_interval(kind):
    s = NoiseSchedule(kind, 1000)
    abar = s.alphas_cumprod
    assert abar.dtype == torch.float32 and abar.shape == (1000,)
    assert (abar > 0).all() and (abar < 1).all()
    assert (abar[1:] < abar[:-1]).all()
    assert "betas" in dict(s.named_buffers()) and not s.state_dict()  # derived, so not saved


def test_schedule_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        NoiseSchedule("quadratic")


def test_q_sample_marginals(schedule):
    n = 200_000
    x0 = torch.tensor([1.0, -0.5, 0.0, 2.0]).expand(n, 4)
    gen = torch.Generator().manual_seed(0)
    for step in (0, 300, 700, 999):
        t = torch.full((n,), step)
        x_t = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
        abar = schedule.alpha_bar(step)
        tol = 5 * math.sqrt((1 - abar) / n)
        torch.testing.assert_close(x_t.mean(0), math.sqrt(abar) * x0[0], rtol=0, atol=tol)
        torch.testing.assert_close(
            x_t.var(0), torch.full((4,), 1 - abar), rtol=0, atol=5 * (1 - abar) * math.sqrt(2 / n) + 1e-7
        )


def test_conversions_are_inverse(schedule):
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    t = torch.tensor([0, 950])
    x_t = schedule.q_sample(x0, t, eps)
    close = dict(rtol=0, atol=1e-4)
    torch.testing.assert_close(schedule.x0_from_eps(x_t, t, eps), x0, **close)
    torch.testing.assert_close(schedule.eps_from_x0(x_t, t, x0), eps, **close)
    v = schedule.v_target(x0, t, eps)
    torch.testing.assert_close(schedule.x0_from_v(x_t, t, v), x0, **close)
    torch.testing.assert_close(schedule.eps_from_v(x_t, t, v), eps, **close)
    alpha, sigma = schedule.alpha_sigma(t, x0.ndim)
    for kind in PREDICTIONS:
        x0_pred, eps_pred = predict(kind, target(kind, x0, eps, alpha, sigma), x_t, alpha, sigma)
        torch.testing.assert_close(x0_pred, x0, **close)
        torch.testing.assert_close(eps_pred, eps, **close)
    torch.testing.assert_close(schedule.snr(t), (alpha**2 / sigma**2).flatten())


# --- training --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_training_terms(schedule, prediction):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    calls = []

    def perfect(x_t, t):  # outputs the exact target, so the estimates must be exact too
        calls.append(t)
        return target(prediction, x0, noise, *schedule.alpha_sigma(t, x_t.ndim))

    terms = training_terms(perfect, schedule, x0, prediction, noise=noise)
    assert set(terms) == {"x_t", "t", "noise", "output", "target", "x0_pred", "eps_pred"}
    assert terms["t"].shape == (2,) and terms["t"].dtype == torch.long and len(calls) == 1
    torch.testing.assert_close(terms["x_t"], schedule.q_sample(x0, terms["t"], terms["noise"]))
    torch.testing.assert_close(terms["output"], terms["target"])
    torch.testing.assert_close(terms["x0_pred"], x0, rtol=0, atol=1e-3)
    torch.testing.assert_close(terms["eps_pred"], noise, rtol=0, atol=1e-3)
    again = training_terms(perfect, schedule, x0, prediction, generator=torch.Generator().manual_seed(5))
    same = training_terms(perfect, schedule, x0, prediction, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again["t"], same["t"]) and torch.equal(again["noise"], same["noise"])


# --- samplers --------------------------------------------------------------------------------------------


def test_sampling_timesteps():
    reference = [int(k * 1000 / 21) for k in range(20, 0, -1)]  # trunc(linspace(0, 1000, 22)), no ends
    assert sampling_timesteps(1000, 20).tolist() == reference
    assert sampling_timesteps(1000, 2).tolist() == [666, 333]
    assert sampling_timesteps(1000, 20, "leading").tolist() == list(range(950, -1, -50))
    assert sampling_timesteps(1000, 20, "trailing").tolist() == list(range(999, 0, -50))
    for spacing in ("reference", "leading", "trailing"):
        assert sampling_timesteps(1000, 1000, spacing).tolist() == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        sampling_timesteps(1000, 0)
    with pytest.raises(ValueError, match="unknown spacing"):
        sampling_timesteps(1000, 10, "karras")


def samplers(schedule, prediction):
    return {
        "ddim": DDIMSampler(schedule, prediction, num_steps=20, eta=0.0),
        "dpm": DPMSolverSampler(schedule, prediction, num_steps=10),
        "ddpm": DDPMSampler(schedule, prediction, num_steps=100),
    }


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_samplers_recover_single_point(schedule, prediction):
    x0_star = torch.randn((1, *SHAPE[1:]), generator=torch.Generator().manual_seed(4)).clamp(-1, 1)
    for name, sampler in samplers(schedule, prediction).items():
        gen = torch.Generator().manual_seed(0)
        out = sampler.sample(ideal_denoiser(schedule, x0_star, prediction), SHAPE, generator=gen)
        assert (out - x0_star).abs().max() < 1e-3, name


def gaussian_data_problem(schedule, mu, s):
    """Data x0 ~ N(mu, s^2) per element: its exact x0 denoiser, and where the probability-flow ODE goes."""

    def denoise(x_t, t):
        alpha, sigma = schedule.alpha_sigma(t, x_t.ndim)
        return mu + alpha * s**2 / (alpha**2 * s**2 + sigma**2) * (x_t - alpha * mu)

    def ode_then_denoise(x_T, t_first, t_last):
        """The exact ODE solution at t_last (a linear map for Gaussian data), then E[x0 | x_{t_last}]."""
        (a0, v0), (a1, v1) = [
            (math.sqrt(ab), ab * s**2 + 1 - ab) for ab in map(schedule.alpha_bar, (t_first, t_last))
        ]
        x_last = a1 * mu + math.sqrt(v1 / v0) * (x_T - a0 * mu)
        return mu + a1 * s**2 / v1 * (x_last - a1 * mu)

    return denoise, ode_then_denoise


def test_dpm_solver_beats_ddim(schedule):
    """On Gaussian data (exact denoiser, exact ODE path), DPM-Solver++(2M) is far closer to the ODE than DDIM.

    With uniform-in-t spacing the last steps stay long in log-SNR whatever the step count (lambda diverges at
    t = 0), so the error does not fall at the textbook second-order rate; hence a comparison with DDIM.
    """
    gen = torch.Generator().manual_seed(6)
    mu, x_T = 0.5 * torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    denoise, exact = gaussian_data_problem(schedule, mu, 0.5)
    errors = {}
    for steps in (10, 20, 40):
        for sampler in (DDIMSampler(schedule, "x0", steps, eta=0.0), DPMSolverSampler(schedule, "x0", steps)):
            t = sampler.timesteps
            out = sampler.sample(denoise, SHAPE, x_T=x_T)
            errors[type(sampler).__name__[:4], steps] = (out - exact(x_T, int(t[0]), int(t[-1]))).abs().mean()
    assert errors["DPMS", 10] < 0.01
    assert errors["DPMS", 10] < 0.15 * errors["DDIM", 10]
    assert errors["DPMS", 20] < 0.3 * errors["DDIM", 20]
    assert errors["DPMS", 10] < 0.5 * errors["DDIM", 40]
    assert errors["DDIM", 40] < 0.5 * errors["DDIM", 10]  # DDIM converges, at first order


@needs_golden
def test_ddim_replays_reference_record(schedule, golden):
    """The reference's 2-step DDIM (eta 0, dynamic thresholding at 0.9) with its recorded network outputs."""
    sampler = DDIMSampler(schedule, "eps", num_steps=2, eta=0.0, reference_alpha_offset=True)
    assert sampler.timesteps.tolist() == [golden["output.ddim.step0.t"][0], golden["output.ddim.step1.t"][0]]
    x_T, x_1 = golden["input.ddim.x_T"], golden["output.ddim.step1.x_in"]
    step0 = sampler.step(golden["output.ddim.step0.pred_noise"], 0, x_T, dynamic_threshold=0.9)
    torch.testing.assert_close(step0.x_next, x_1, rtol=0, atol=1e-5)
    step1 = sampler.step(golden["output.ddim.step1.pred_noise"], 1, x_1, dynamic_threshold=0.9)
    torch.testing.assert_close(step1.x_next, golden["output.ddim.result"], rtol=0, atol=1e-5)

    records = iter([("step0", x_T), ("step1", x_1)])

    def replay(x_t, t):
        name, x_in = next(records)
        assert torch.equal(t, golden[f"output.ddim.{name}.t"])
        torch.testing.assert_close(x_t, x_in, rtol=0, atol=1e-5)
        return golden[f"output.ddim.{name}.pred_noise"]

    out = sampler.sample(replay, x_T.shape, x_T=x_T, dynamic_threshold=0.9)
    torch.testing.assert_close(out, golden["output.ddim.result"], rtol=0, atol=1e-5)
    # Without the reference's alpha_bar offset the first update lands measurably elsewhere.
    plain = DDIMSampler(schedule, "eps", num_steps=2, eta=0.0)
    moved = plain.step(golden["output.ddim.step0.pred_noise"], 0, x_T, dynamic_threshold=0.9).x_next
    assert (moved - x_1).abs().max() > 1e-4


def toy_eps_model(x_t, t):
    return torch.tanh(x_t) * (t.float() / 1000).reshape(-1, 1, 1, 1, 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: DDIMSampler(s, num_steps=10, eta=1.0),
        lambda s: DDPMSampler(s, num_steps=10),
        lambda s: DPMSolverSampler(s, num_steps=10),
    ],
)
def test_samplers_are_seeded(schedule, make):
    sampler = make(schedule)
    runs = [
        sampler.sample(toy_eps_model, SHAPE, generator=torch.Generator().manual_seed(k)) for k in (0, 0, 1)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
    assert torch.isfinite(runs[0]).all()


def test_ddim_eta1_differs_by_seed_only_in_noise(schedule):
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    ddim = DDIMSampler(schedule, num_steps=10, eta=1.0)
    a, b = (ddim.sample(toy_eps_model, SHAPE, torch.Generator().manual_seed(k), x_T=x_T) for k in (0, 1))
    assert not torch.allclose(a, b)
    deterministic = DDIMSampler(schedule, num_steps=10, eta=0.0)
    c, d = (
        deterministic.sample(toy_eps_model, SHAPE, torch.Generator().manual_seed(k), x_T=x_T) for k in (0, 1)
    )
    assert torch.equal(c, d)


def test_ddim_eta1_equals_ddpm(schedule):
    """DDIM with eta 1 is DDPM's ancestral sampler (Song et al. 2021, sec. 4.1), draw for draw."""
    ddim = DDIMSampler(schedule, num_steps=25, eta=1.0).sample(
        toy_eps_model, SHAPE, torch.Generator().manual_seed(8)
    )
    ddpm = DDPMSampler(schedule, num_steps=25).sample(toy_eps_model, SHAPE, torch.Generator().manual_seed(8))
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-4)


def test_sample_checks_x_T_shape(schedule):
    with pytest.raises(ValueError, match="x_T has shape"):
        DDIMSampler(schedule).sample(toy_eps_model, SHAPE, x_T=torch.zeros(1, 2))


def test_progress_wraps_the_steps(schedule):
    seen = []

    def progress(steps):
        for i in steps:
            seen.append(i)
            yield i

    DPMSolverSampler(schedule, num_steps=5).sample(toy_eps_model, SHAPE, progress=progress)
    assert seen == list(range(5))


# --- thresholding ----------------------------------------------------------------------------------------


def test_dynamic_threshold():
    gen = torch.Generator().manual_seed(9)
    small = 0.5 * torch.rand(1000, generator=gen) - 0.25  # |x| <= 0.25 ...
    small[:50] = 10.0  # ... plus 5 % outliers: the 0.9 quantile stays below 1, so s = 1
    large = 4 * torch.rand(1000, generator=gen) - 2  # the 0.9 quantile of |x| is about 1.8 > 1
    large[:20] = -30.0
    x0 = torch.stack([small, large]).reshape(2, 10, 10, 10)
    out = dynamic_threshold(x0, 0.9).reshape(2, -1)

    inside = small.abs() <= 1
    assert torch.equal(out[0][inside], small[inside])  # values within the threshold are unchanged
    assert torch.equal(out[0][~inside], torch.ones(50))  # outliers are clamped to s = 1

    s = large.abs().sort().values[899:901]  # linear interpolation at 0.9 (n - 1) = 899.1
    s = s[0] + 0.1 * (s[1] - s[0])
    assert s > 1
    torch.testing.assert_close(out[1], large.clamp(-s, s) / s)
    assert out[1].abs().max() == 1 and torch.equal(out[1][:20], -torch.ones(20))


def test_process_x0_clips():
    x0 = torch.linspace(-3, 3, 12).reshape(1, 12)
    assert torch.equal(process_x0(x0), x0)
    assert torch.equal(process_x0(x0, clip_range=(-1.0, 1.0)), x0.clamp(-1, 1))


# --- classifier-free guidance ----------------------------------------------------------------------------


class CountingModel:
    """A conditional model: x_t / 2 + t / 1000 + the condition (zeros where dropped), counting its calls."""

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, x_t, t, drop_cond, audio):
        self.batches.append(x_t.shape[0])
        keep = ~torch.as_tensor(drop_cond, device=x_t.device).reshape(-1, *(1,) * (x_t.ndim - 1))
        return x_t / 2 + t.reshape(-1, 1, 1, 1, 1) / 1000 + keep * audio


def test_cfg_scale_1_is_one_conditional_pass(schedule):
    model, audio = CountingModel(), torch.randn(SHAPE)
    denoise = guided_denoiser(model, {"audio": audio}, scale=1.0)
    x, t = torch.randn(SHAPE), torch.tensor([500, 10])
    torch.testing.assert_close(denoise(x, t), x / 2 + t.reshape(-1, 1, 1, 1, 1) / 1000 + audio)
    model.batches.clear()
    DDIMSampler(schedule, num_steps=4, eta=0.0).sample(denoise, SHAPE)
    assert model.batches == [2] * 4


@pytest.mark.parametrize("batched", [True, False])
def test_cfg_scale_2_follows_the_formula(batched):
    model, audio = CountingModel(), torch.randn(SHAPE)
    x, t = torch.randn(SHAPE), torch.tensor([500, 10])
    cond = model(x, t, False, audio)
    uncond = model(x, t, True, audio)
    model.batches.clear()
    out = guided_denoiser(model, {"audio": audio}, scale=2.0, batched=batched)(x, t)
    torch.testing.assert_close(out, uncond + 2.0 * (cond - uncond))
    assert model.batches == ([4] if batched else [2, 2])
