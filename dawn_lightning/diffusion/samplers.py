"""Samplers: ``set_timesteps(num_steps)``, then ``step`` per timestep, or the whole loop with ``sample``.

Every sampler walks a descending list of timesteps t_0 > ... > t_{S-1} and finally steps to clean data
(t = -1, alpha_bar = 1). At each timestep it calls ``denoise(x_t (B, ...), t (B,) long) -> output (B, ...)``,
the network output in the sampler's prediction kind (eps, x0 or v). Per-step coefficients are float64 scalars.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from dawn_lightning.diffusion.parametrization import Prediction, Scalar, check_prediction, predict
from dawn_lightning.diffusion.schedules import NoiseSchedule
from dawn_lightning.diffusion.thresholding import process_x0

Spacing = Literal["reference", "leading", "trailing"]
Denoiser = Callable[[Tensor, Tensor], Tensor]
Progress = Callable[[Iterable[int]], Iterable[int]]


def sampling_timesteps(num_timesteps: int, num_steps: int, spacing: Spacing = "reference") -> Tensor:
    """The S = ``num_steps`` timesteps a sampler visits, descending, LongTensor (S,).

    - "reference": the DAWN reference's DDIM: trunc(linspace(0, T, S + 2)) without both ends, in float32 like
      the reference (T = 1000, S = 20: 952, 904, ..., 95, 47); after the last one, clean data.
    - "leading": 0, T//S, 2 T//S, ... (Song et al. 2021, DDIM's uniform skip), e.g. 950, 900, ..., 0.
    - "trailing": round(T - k T/S) - 1 (Lin et al. 2024, table 2), e.g. 999, 949, ..., 49: from pure noise.
    With S = T all three are T-1, ..., 0.
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
    k = torch.arange(num_steps)
    if spacing == "reference":
        return torch.linspace(0.0, num_timesteps, num_steps + 2)[1:-1].long().flip(0)
    if spacing == "leading":
        return (k * (num_timesteps // num_steps)).flip(0)
    if spacing == "trailing":
        return (num_timesteps - k * (num_timesteps / num_steps)).round().long() - 1
    raise ValueError(f"unknown spacing {spacing!r}: expected 'reference', 'leading' or 'trailing'")


def posterior_coefficients(alpha_bar_t: Scalar, alpha_bar_prev: Scalar) -> tuple[Scalar, Scalar, Scalar]:
    """q(x_prev | x_t, x0) = N(c_x0 x0 + c_xt x_t, var) between two (possibly respaced) steps.

    Ho et al. 2020, eqs. 6-7, with beta = 1 - alpha_bar_t / alpha_bar_prev for a respaced chain
    (Nichol & Dhariwal 2021, sec. 4). Returns (c_x0, c_xt, var). Works on floats and on float tensors alike.
    """
    beta = 1 - alpha_bar_t / alpha_bar_prev
    c_x0 = alpha_bar_prev**0.5 * beta / (1 - alpha_bar_t)
    c_xt = (1 - beta) ** 0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    return c_x0, c_xt, (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta


def ddim_sigma(eta: float, alpha_bar_t: float, alpha_bar_next: float) -> float:
    """sigma(eta) = eta sqrt((1 - a_next)/(1 - a_t)) sqrt(1 - a_t/a_next) (Song et al. 2021, eq. 16).

    0 for a step to clean data (a_next = 1).
    """
    if alpha_bar_next >= 1:
        return 0.0
    return eta * ((1 - alpha_bar_next) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_next)) ** 0.5


class StepOutput(NamedTuple):
    x_next: Tensor
    """(B, ...) the sample at the next, less noisy timestep (clean data after the last step)."""
    x0_pred: Tensor
    """(B, ...) the (thresholded) prediction of x0 at this step."""


class Sampler(ABC):
    """Shared part of the samplers: the timesteps, prediction conversion and the sampling loop.

    ``schedule`` is the training schedule; ``prediction`` what the network outputs; ``spacing`` how the
    ``num_steps`` timesteps are chosen among the T (see ``sampling_timesteps``).
    """

    def __init__(
        self, schedule: NoiseSchedule, prediction: Prediction, num_steps: int, spacing: Spacing = "reference"
    ):
        self.schedule = schedule
        self.prediction = check_prediction(prediction)
        self.spacing = spacing
        self.set_timesteps(num_steps)

    @property
    def network_passes(self) -> int:
        """Network evaluations of one sample (before guidance doubles them)."""
        return self.num_steps

    def set_timesteps(self, num_steps: int) -> None:
        self.num_steps = num_steps
        self.timesteps = sampling_timesteps(self.schedule.num_timesteps, num_steps, self.spacing)

    def timestep_pair(self, index: int) -> tuple[int, int]:
        """(t, t_next) of step ``index``; t_next = -1 after the last timestep (clean data)."""
        t_next = int(self.timesteps[index + 1]) if index + 1 < self.num_steps else -1
        return int(self.timesteps[index]), t_next

    def predict_x0_eps(
        self,
        output: Tensor,
        x_t: Tensor,
        t: int,
        dynamic_threshold: float | None = None,
        clip_x0: tuple[float, float] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(x0_pred, eps_pred) at timestep t; only x0 is thresholded / clipped (eps stays the network's)."""
        alpha_bar = self.schedule.alpha_bar(t)
        x0, eps = predict(self.prediction, output, x_t, alpha_bar**0.5, (1 - alpha_bar) ** 0.5)
        return process_x0(x0, dynamic_threshold, clip_x0), eps

    @abstractmethod
    def step(
        self,
        output: Tensor,
        index: int,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        dynamic_threshold: float | None = None,
        clip_x0: tuple[float, float] | None = None,
    ) -> StepOutput:
        """One update from x_t at ``self.timesteps[index]`` given the network ``output`` there.

        ``dynamic_threshold`` is a percentile (e.g. 0.9) for Imagen's thresholding of x0, ``clip_x0`` a
        (low, high) range; both off by default. ``generator`` draws the noise of stochastic samplers.
        """

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoiser,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        x_T: Tensor | None = None,
        dynamic_threshold: float | None = None,
        clip_x0: tuple[float, float] | None = None,
        progress: Progress | None = None,
    ) -> Tensor:
        """Run all steps from x_T (default: N(0, I) of ``shape`` from ``generator``, on the schedule's
        device), under ``torch.no_grad()``.

        ``progress`` wraps the iterable of step indices (e.g. ``tqdm``). Returns the sample, ``shape``.
        """
        if x_T is None:
            x = torch.randn(tuple(shape), generator=generator, device=self.schedule.betas.device)
        elif tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        else:
            x = x_T
        indices: Iterable[int] = range(self.num_steps)
        for index in progress(indices) if progress is not None else indices:
            t = torch.full((x.shape[0],), int(self.timesteps[index]), dtype=torch.long, device=x.device)
            x = self.step(denoise(x, t), index, x, generator, dynamic_threshold, clip_x0).x_next
        return x


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) through the posterior q(x_prev | x_t, x0_pred).

    ``num_steps`` None runs the full chain of T steps; fewer respace it (Nichol & Dhariwal 2021, sec. 4).
    The variance is the posterior's, beta-tilde (Ho et al. 2020, eq. 7).
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        prediction: Prediction = "eps",
        num_steps: int | None = None,
        spacing: Spacing = "reference",
    ):
        super().__init__(
            schedule, prediction, schedule.num_timesteps if num_steps is None else num_steps, spacing
        )

    def step(
        self,
        output: Tensor,
        index: int,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        dynamic_threshold: float | None = None,
        clip_x0: tuple[float, float] | None = None,
    ) -> StepOutput:
        t, t_next = self.timestep_pair(index)
        x0, _ = self.predict_x0_eps(output, x_t, t, dynamic_threshold, clip_x0)
        c_x0, c_xt, var = posterior_coefficients(self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_next))
        x_next = c_x0 * x0 + c_xt * x_t
        if var > 0:
            x_next = x_next + var**0.5 * _noise(x_t, generator)
        return StepOutput(x_next, x0)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12): x_next = sqrt(a_next) x0 + sqrt(1 - a_next - sigma^2) eps + sigma z.

    ``eta`` sets sigma (eq. 16): 0 is deterministic, 1 is DDPM-like (DAWN samples with 20 steps, eta 1).
    ``reference_alpha_offset`` reproduces the DAWN reference exactly: its update reads alpha_bar of t - 1
    (``alphas_cumprod_prev[t]``) for a latent the network is told is at t, and alpha_bar of t_next - 1 for the
    next one. Off (default), every alpha_bar is that of the timestep the network sees.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        prediction: Prediction = "eps",
        num_steps: int = 20,
        eta: float = 1.0,
        spacing: Spacing = "reference",
        reference_alpha_offset: bool = False,
    ):
        super().__init__(schedule, prediction, num_steps, spacing)
        self.eta = eta
        self.reference_alpha_offset = reference_alpha_offset

    def step(
        self,
        output: Tensor,
        index: int,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        dynamic_threshold: float | None = None,
        clip_x0: tuple[float, float] | None = None,
    ) -> StepOutput:
        t, t_next = self.timestep_pair(index)
        x0, eps = self.predict_x0_eps(output, x_t, t, dynamic_threshold, clip_x0)
        offset = 1 if self.reference_alpha_offset else 0
        a_t, a_next = self.schedule.alpha_bar(t - offset), self.schedule.alpha_bar(t_next - offset)
        sigma = ddim_sigma(self.eta, a_t, a_next)
        x_next = a_next**0.5 * x0 + (1 - a_next - sigma**2) ** 0.5 * eps
        if sigma > 0:
            x_next = x_next + sigma * _noise(x_t, generator)
        return StepOutput(x_next, x0)
