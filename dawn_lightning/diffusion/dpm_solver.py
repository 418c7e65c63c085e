"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep ODE sampler."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dawn_lightning.diffusion.parametrization import Prediction
from dawn_lightning.diffusion.samplers import Sampler, Spacing, StepOutput
from dawn_lightning.diffusion.schedules import NoiseSchedule


class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M) in data-prediction form, deterministic; good samples in 10-25 steps.

    Lu et al. 2022, Algorithm 2; lambda_t = log(alpha_t / sigma_t), h_i = lambda_{t_i} - lambda_{t_{i-1}}:
        x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (exp(-h_i) - 1) D_i,
    where D_1 = x0_1 and D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2} with r_i = h_{i-1} / h_i.
    The last step, to clean data (h infinite), returns the x0 prediction (the first-order update's limit).
    The previous x0 prediction is kept between ``step`` calls and forgotten at step 0.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        prediction: Prediction = "eps",
        num_steps: int = 20,
        spacing: Spacing = "reference",
    ):
        super().__init__(schedule, prediction, num_steps, spacing)
        self._previous: tuple[Tensor, float] | None = None

    def step(
        self,
        output: Tensor,
        index: int,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        dynamic_threshold: float | None = None,
        clip_x0: tuple[float, float] | None = None,
    ) -> StepOutput:
        if index == 0:
            self._previous = None
        t, t_next = self.timestep_pair(index)
        x0, _ = self.predict_x0_eps(output, x_t, t, dynamic_threshold, clip_x0)
        if t_next < 0:
            return StepOutput(x0, x0)
        a_t, a_next = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_next)
        h = 0.5 * (math.log(a_next / (1 - a_next)) - math.log(a_t / (1 - a_t)))
        d = x0
        if self._previous is not None:
            x0_previous, h_previous = self._previous
            half_inv_r = h / (2 * h_previous)
            d = (1 + half_inv_r) * x0 - half_inv_r * x0_previous
        self._previous = (x0, h)
        x_next = ((1 - a_next) / (1 - a_t)) ** 0.5 * x_t - a_next**0.5 * math.expm1(-h) * d
        return StepOutput(x_next, x0)
