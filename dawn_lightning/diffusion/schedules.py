"""Noise schedules of Gaussian diffusion: beta_t for t = 0..T-1 and the quantities derived from it.

Notation (Ho et al. 2020): alpha_bar_t = prod_{s<=t} (1 - beta_s); x_t = alpha_t x0 + sigma_t eps with
alpha_t = sqrt(alpha_bar_t) and sigma_t = sqrt(1 - alpha_bar_t) (the forward marginal, Ho et al. 2020 eq. 4).
Timesteps are integers in [0, T); t = -1 stands for clean data (alpha_bar = 1) where samplers need it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from dawn_lightning.diffusion import parametrization as P

ScheduleKind = Literal["cosine", "linear"]


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.9999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17), float64 (T,).

    alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2);
    beta_t = 1 - alpha_bar(t+1) / alpha_bar(t), clipped to max_beta. The paper clips at 0.999; the DAWN
    reference (and so the default) at 0.9999, which only changes the last step.
    """
    steps = torch.linspace(0, num_timesteps, num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0, max_beta)


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linear schedule (Ho et al. 2020, sec. 4: 1e-4 to 0.02 for T = 1000), float64 (T,).

    The end points are scaled by 1000/T so that other T keep the same overall noise (Nichol & Dhariwal 2021).
    """
    scale = 1000 / num_timesteps
    return torch.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=torch.float64)


class NoiseSchedule(nn.Module):
    """A beta schedule and its derived quantities, as float32 buffers that move with ``.to(device)``.

    Everything is computed in float64, then stored as float32 (non-persistent: derived, not learned).
    ``alpha_bar(t)`` serves samplers: a float64 scalar from a CPU copy, for per-step coefficients.

    Every ``t`` argument is a LongTensor (B,) of steps in [0, T) (or a 0-dim one); tensors x are (B, ...),
    with any number of trailing dims, e.g. (B, 3, F, h, w).
    """

    betas: Tensor
    alphas_cumprod: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor

    def __init__(
        self,
        kind: ScheduleKind = "cosine",
        num_timesteps: int = 1000,
        cosine_s: float = 0.008,
        max_beta: float = 0.9999,
    ):
        super().__init__()
        if kind == "cosine":
            betas = cosine_betas(num_timesteps, cosine_s, max_beta)
        elif kind == "linear":
            betas = linear_betas(num_timesteps)
        else:
            raise ValueError(f"unknown noise schedule {kind!r}: expected 'cosine' or 'linear'")
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        self.kind, self.num_timesteps = kind, num_timesteps
        self._alpha_bar64 = alpha_bar  # a plain CPU attribute, not a buffer: it stays float64 on .to()
        for name, value in {
            "betas": betas,
            "alphas_cumprod": alpha_bar,
            "sqrt_alphas_cumprod": alpha_bar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alpha_bar).sqrt(),
        }.items():
            self.register_buffer(name, value.float(), persistent=False)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, num_timesteps={self.num_timesteps}"

    def alpha_bar(self, t: int) -> float:
        """alpha_bar_t as a float64 scalar; 1.0 for t < 0 (clean data)."""
        return 1.0 if t < 0 else float(self._alpha_bar64[t])

    def timestep_of(self, alpha_bar: Tensor) -> Tensor:
        """The (fractional) timestep whose alpha_bar is ``alpha_bar`` (B,), interpolated linearly between
        the integer timesteps' (alpha_bar decreases with t): where a network trained on this schedule meets
        a latent of that signal-to-noise ratio."""
        table = self.alphas_cumprod.flip(0)  # increasing
        target = alpha_bar.to(table).clamp(float(table[0]), float(table[-1]))
        upper = torch.searchsorted(table, target).clamp(1, len(table) - 1)
        low, high = table[upper - 1], table[upper]
        fraction = (target - low) / (high - low).clamp_min(1e-12)
        flipped = (upper - 1).to(target.dtype) + fraction  # a position in the flipped table
        return (self.num_timesteps - 1) - flipped

    def alpha_sigma(self, t: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t), each (B,) reshaped to (B, 1, ..., 1) with ``ndim`` dims for broadcasting."""
        alpha, sigma = self.sqrt_alphas_cumprod[t], self.sqrt_one_minus_alphas_cumprod[t]
        trailing = (1,) * (ndim - alpha.ndim)
        return alpha.reshape(*alpha.shape, *trailing), sigma.reshape(*sigma.shape, *trailing)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = alpha_t x0 + sigma_t eps, a sample of q(x_t | x0) (Ho et al. 2020, eq. 4). (B, ...)."""
        alpha, sigma = self.alpha_sigma(t, x0.ndim)
        return alpha * x0 + sigma * noise

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return P.x0_from_eps(x_t, eps, *self.alpha_sigma(t, x_t.ndim))

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        return P.eps_from_x0(x_t, x0, *self.alpha_sigma(t, x_t.ndim))

    def v_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return P.v_from_x0_eps(x0, eps, *self.alpha_sigma(t, x0.ndim))

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        return P.x0_from_v(x_t, v, *self.alpha_sigma(t, x_t.ndim))

    def eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        return P.eps_from_v(x_t, v, *self.alpha_sigma(t, x_t.ndim))

    def snr(self, t: Tensor) -> Tensor:
        """SNR(t) = alpha_t^2 / sigma_t^2 (Kingma et al. 2021, Variational Diffusion Models), (B,)."""
        return (self.sqrt_alphas_cumprod[t] / self.sqrt_one_minus_alphas_cumprod[t]) ** 2
