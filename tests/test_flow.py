"""Flow matching: the linear path's training targets; Euler and Heun integrating a known velocity field;
the velocity a guided teacher implies (distillation)."""

from __future__ import annotations

import math

import pytest
import torch

from dawn_lightning.diffusion import (
    FlowSampler,
    NoiseSchedule,
    flow_training_terms,
    logit_normal_times,
    make_sampler,
)
from dawn_lightning.diffusion.distillation import teacher_velocity
from dawn_lightning.diffusion.flow import TIMESCALE, flow_times


def test_training_terms_of_the_linear_path():
    x0, noise = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    seen = {}

    def oracle(x_t, t_net):  # the true velocity of this pair
        seen["t"] = t_net
        return noise - x0

    terms = flow_training_terms(oracle, x0, noise, t)
    tt = t[:, None, None]
    torch.testing.assert_close(terms["x_t"], (1 - tt) * x0 + tt * noise)
    torch.testing.assert_close(terms["target"], noise - x0)
    torch.testing.assert_close(terms["x0_pred"], x0)  # an exact velocity recovers both ends
    torch.testing.assert_close(terms["eps_pred"], noise)
    torch.testing.assert_close(seen["t"], t * TIMESCALE)


def test_logit_normal_times_and_the_step_times():
    t = logit_normal_times(torch.randn(100_000, generator=torch.Generator().manual_seed(0)))
    assert 0 < float(t.min()) and float(t.max()) < 1 and abs(float(t.median()) - 0.5) < 0.01
    assert flow_times(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    shifted = flow_times(4, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0 and (shifted[1:-1] > flow_times(4)[1:-1]).all()


def gaussian_velocity(mu: float, s: float):
    """The exact velocity field of the linear path from data N(mu, s^2) to N(0, 1): E[eps - x0 | x_t]."""

    def velocity(x, t_net):
        t = (t_net / TIMESCALE).reshape(-1, *([1] * (x.ndim - 1)))
        var = (1 - t) ** 2 * s**2 + t**2  # x_t ~ N((1 - t) mu, var)
        x0_mean = mu + (1 - t) * s**2 / var * (x - (1 - t) * mu)
        eps_mean = t / var * (x - (1 - t) * mu)
        return eps_mean - x0_mean

    return velocity


@pytest.mark.parametrize(("solver", "steps", "tolerance"), [("euler", 64, 0.03), ("heun", 8, 0.01)])
def test_samplers_carry_noise_to_the_data_distribution(solver, steps, tolerance):
    mu, s = 1.5, 0.3
    sampler = FlowSampler(steps, solver)
    x = sampler.sample(gaussian_velocity(mu, s), (20_000, 1), generator=torch.Generator().manual_seed(0))
    assert abs(float(x.mean()) - mu) < tolerance and abs(float(x.std()) - s) < tolerance
    assert sampler.network_passes == (steps if solver == "euler" else 2 * steps)


def test_one_euler_step_is_exact_for_a_single_point():
    target = torch.tensor([[2.0, -1.0]])

    def velocity(x, t_net):  # data is one point: v = (x - x0) / t
        return (x - target) / (t_net / TIMESCALE)[:, None]

    x = FlowSampler(1, "euler").sample(velocity, (1, 2), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, target)


def test_samplers_are_seeded_and_named():
    velocity = gaussian_velocity(0.0, 1.0)
    runs = [FlowSampler(3).sample(velocity, (2, 4), torch.Generator().manual_seed(k)) for k in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    heun = make_sampler("flow_heun", None, num_steps=5, flow_shift=2.0)
    assert isinstance(heun, FlowSampler) and heun.solver == "heun" and heun.shift == 2.0
    with pytest.raises(ValueError, match="unknown flow solver"):
        FlowSampler(2, "midpoint")
    assert math.isclose(float(flow_times(2, shift=1.0)[1]), 0.5)


def test_a_diffusion_teacher_is_asked_at_the_point_of_equal_signal_to_noise():
    """An oracle eps-teacher of data that is one point: the velocity it implies on the linear path is the
    exact one, (x_t - x0) / t, at every t."""
    schedule = NoiseSchedule("cosine", 1000)
    point = torch.tensor([[0.7, -1.2, 0.3]])
    table = schedule.alphas_cumprod.double()

    def oracle(x_d, timestep):  # the true eps of the one data point at the teacher's (fractional) timestep
        low = timestep.floor().long().clamp(0, 998)
        a = table[low] + (timestep.double() - low) * (table[low + 1] - table[low])
        alpha, sigma = a.sqrt()[:, None].float(), (1 - a).sqrt()[:, None].float()
        return (x_d - alpha * point) / sigma

    t = torch.tensor([0.05, 0.3, 0.5, 0.8, 0.97])
    x_t = (1 - t[:, None]) * point + t[:, None] * torch.randn(
        5, 3, generator=torch.Generator().manual_seed(0)
    )
    velocity = teacher_velocity(oracle, x_t, t, "diffusion", schedule, "eps")
    torch.testing.assert_close(velocity, (x_t - point) / t[:, None], atol=2e-3, rtol=1e-3)
    flow = teacher_velocity(lambda x, s: x * 0 + s[:, None] / TIMESCALE, x_t, t, "flow")
    torch.testing.assert_close(flow[:, 0], t)  # a flow teacher is asked at t itself
