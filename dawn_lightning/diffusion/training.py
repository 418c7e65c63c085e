"""The tensors of one denoising training step; the caller weighs them into its losses.

DAWN's stage 3 uses eps-MSE + w * x0-MSE + w * mouth-masked eps-MSE, so it needs x0_pred and eps_pred as well
as the (output, target) pair of the simple loss (Ho et al. 2020, eq. 14).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dawn_lightning.diffusion.parametrization import Prediction, check_prediction, predict, target
from dawn_lightning.diffusion.schedules import NoiseSchedule

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""denoise(x_t (B, ...), t (B,) long) -> network output (B, ...), in the parametrization's kind."""


def training_terms(
    model: Denoiser,
    schedule: NoiseSchedule,
    x0: Tensor,
    prediction: Prediction = "eps",
    noise: Tensor | None = None,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Noise x0 (B, ...) at t ~ U{0..T-1} (Ho et al. 2020, Algorithm 1), run the model, convert its output.

    ``noise`` (B, ...) and ``t`` (B,) default to draws from ``generator`` (on x0's device). Returns a dict of
    x_t, t, noise, output, target (all (B, ...) except t) and x0_pred, eps_pred, the network's estimates of x0
    and of the noise whatever it predicts.
    """
    check_prediction(prediction)
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = schedule.q_sample(x0, t, noise)
    alpha, sigma = schedule.alpha_sigma(t, x0.ndim)
    output = model(x_t, t)
    x0_pred, eps_pred = predict(prediction, output, x_t, alpha, sigma)
    return {
        "x_t": x_t,
        "t": t,
        "noise": noise,
        "output": output,
        "target": target(prediction, x0, noise, alpha, sigma),
        "x0_pred": x0_pred,
        "eps_pred": eps_pred,
    }
