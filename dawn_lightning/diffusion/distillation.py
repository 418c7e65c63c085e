"""Guidance distillation into a flow-matching student: the teacher's classifier-free-guided prediction as the
student's velocity target, so the student makes one network pass a step where the teacher made two (Meng et
al. 2023, "On Distillation of Guided Diffusion Models", sec. 3.1, stage one), and samples with few Euler
steps on the linear path (`flow`).

A flow teacher's guided output is that velocity. A diffusion teacher (eps, x0 or v on a variance-preserving
schedule) is asked at the point of its own path with the same signal-to-noise ratio: x_t = (1 - t) x0 + t eps
is x_d = x_t / s with s = sqrt((1 - t)^2 + t^2), alpha = (1 - t) / s, sigma = t / s, at the (fractional)
timestep whose alpha_bar is alpha^2; its (x0, eps) estimate gives v = eps - x0 (Kingma et al. 2021,
"Variational Diffusion Models", sec. 3: paths of equal SNR are the same up to scaling).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from dawn_lightning.diffusion.flow import TIMESCALE
from dawn_lightning.diffusion.parametrization import Prediction, predict
from dawn_lightning.diffusion.schedules import NoiseSchedule

Denoiser = Callable[[Tensor, Tensor], Tensor]


def teacher_velocity(
    denoise: Denoiser,
    x_t: Tensor,
    t: Tensor,
    objective: str,
    schedule: NoiseSchedule | None = None,
    prediction: Prediction = "eps",
) -> Tensor:
    """The velocity on the linear path a teacher implies at x_t (B, ...) and flow time t (B,) in (0, 1).

    ``denoise(x, timestep)`` is the teacher's (guided) network; ``objective`` "flow" or "diffusion" (then
    ``schedule`` and ``prediction`` are the teacher's)."""
    if objective == "flow":
        return denoise(x_t, t * TIMESCALE)
    tt = t.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
    scale = ((1 - tt) ** 2 + tt**2).sqrt()
    alpha, sigma = (1 - tt) / scale, tt / scale
    x_d = x_t / scale
    timestep = schedule.timestep_of((alpha**2).flatten())
    x0, eps = predict(prediction, denoise(x_d, timestep.to(x_t.dtype)), x_d, alpha, sigma)
    return eps - x0
