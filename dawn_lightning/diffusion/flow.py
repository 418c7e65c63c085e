"""Flow matching on the linear (rectified-flow / optimal-transport) path, and its few-step samplers.

The path between data x0 and noise eps (Liu et al. 2023, "Flow Straight and Fast", eq. 1; Lipman et al. 2023,
"Flow Matching for Generative Modeling", sec. 4.1, the OT path with sigma_min = 0):

    x_t = (1 - t) x0 + t eps,  t in [0, 1],   velocity  v = dx_t/dt = eps - x0.

The network predicts v (conditional flow matching, Lipman et al. 2023, eq. 23); from x_t and v, x0 = x_t - t v
and eps = x_t + (1 - t) v, so the project's x0 and mouth loss terms apply unchanged. Training draws t from a
logit-normal (Esser et al. 2024, "Scaling Rectified Flow Transformers", sec. 3.1: t = sigmoid(n), n ~ N(0,
1)), which favours the middle of the path where the velocity is hardest to predict. Sampling integrates dx/dt
= v from t = 1 (noise) to 0 with Euler or Heun steps (Karras et al. 2022, "Elucidating the Design Space",
Algorithm 1). The network sees t * ``TIMESCALE``: the range of the diffusion timesteps its sinusoidal
embedding was built for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from torch import Tensor

from dawn_lightning.diffusion.thresholding import process_x0

TIMESCALE = 1000.0
Solver = Literal["euler", "heun"]
SOLVERS: tuple[Solver, ...] = ("euler", "heun")
Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t * TIMESCALE (B,) float) -> v (B, ...)
Progress = Callable[[Iterable[int]], Iterable[int]]


def _expand(t: Tensor, ndim: int) -> Tensor:
    return t.reshape(-1, *([1] * (ndim - 1)))


def logit_normal_times(normal: Tensor) -> Tensor:
    """t = sigmoid(n) for n ~ N(0, 1) draws (B,): the logit-normal of Esser et al. 2024, sec. 3.1."""
    return torch.sigmoid(normal)


def flow_training_terms(model: Denoiser, x0: Tensor, noise: Tensor, t: Tensor) -> dict[str, Tensor]:
    """One flow-matching step: x_t on the linear path at t (B,) in (0, 1), the network's velocity, and the
    same dict as `training_terms` (x_t, t, noise, output, target = eps - x0, x0_pred, eps_pred)."""
    tt = _expand(t.to(x0.dtype), x0.ndim)
    x_t = (1 - tt) * x0 + tt * noise
    output = model(x_t, t * TIMESCALE)
    return {
        "x_t": x_t,
        "t": t,
        "noise": noise,
        "output": output,
        "target": noise - x0,
        "x0_pred": x_t - tt * output,
        "eps_pred": x_t + (1 - tt) * output,
    }


def flow_times(num_steps: int, shift: float = 1.0) -> Tensor:
    """The num_steps + 1 times 1 = t_0 > ... > t_S = 0 (float64), uniform, or with ``shift`` > 1 spending
    more steps near the noise: t -> shift t / (1 + (shift - 1) t) (Esser et al. 2024, sec. 5.3.2)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return shift * t / (1 + (shift - 1) * t)


class FlowSampler:
    """Integrates the learned velocity from noise (t = 1) to data (t = 0) in ``num_steps`` steps: "euler"
    (one network pass a step) or "heun" (two: the velocity is defined at t = 0 too, so unlike Karras et al.'s
    Algorithm 1 the last step is corrected as well).

    ``sample`` has the signature of the diffusion samplers' (`samplers.Sampler.sample`), so the stage-3
    generator runs either; ``dynamic_threshold`` / ``clip_x0`` act on the x0 each step implies."""

    def __init__(self, num_steps: int = 8, solver: Solver = "euler", shift: float = 1.0):
        if solver not in SOLVERS:
            raise ValueError(f"unknown flow solver {solver!r}: expected one of {SOLVERS}")
        self.num_steps, self.solver, self.shift = num_steps, solver, shift
        self.times = flow_times(num_steps, shift)

    @property
    def network_passes(self) -> int:
        """Network evaluations of one sample (before guidance doubles them)."""
        return self.num_steps if self.solver == "euler" else 2 * self.num_steps

    def velocity(
        self,
        denoise: Denoiser,
        x: Tensor,
        t: float,
        dynamic_threshold: float | None,
        clip_x0: tuple[float, float] | None,
    ) -> Tensor:
        v = denoise(x, torch.full((x.shape[0],), t * TIMESCALE, device=x.device, dtype=x.dtype))
        if (dynamic_threshold is None and clip_x0 is None) or t <= 0:  # at t = 0, x is x0 itself
            return v
        x0 = process_x0(x - t * v, dynamic_threshold, clip_x0)
        return (x - x0) / t  # the velocity towards the processed x0

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
        """x0 of ``shape`` from x_T (default: N(0, I) from ``generator``)."""
        x = torch.randn(tuple(shape), generator=generator) if x_T is None else x_T
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x.shape)}, expected {tuple(shape)}")
        times = self.times.tolist()
        indices: Iterable[int] = range(self.num_steps)
        for k in progress(indices) if progress is not None else indices:
            t, t_next = times[k], times[k + 1]
            v = self.velocity(denoise, x, t, dynamic_threshold, clip_x0)
            x_euler = x + (t_next - t) * v
            if self.solver == "heun":
                v_next = self.velocity(denoise, x_euler, t_next, dynamic_threshold, clip_x0)
                x = x + (t_next - t) * (v + v_next) / 2
            else:
                x = x_euler
        return x
