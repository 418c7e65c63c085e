"""Classifier-free guidance (Ho & Salimans 2022): a conditional denoiser made into ``denoise(x_t, t)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor


class ConditionalDenoiser(Protocol):
    """``model(x_t, t, drop_cond=..., **cond) -> output``, the minimal interface guidance needs.

    x_t (B, ...), t (B,) long, output (B, ...). ``drop_cond`` is a bool for the whole batch (False: use the
    condition; True: replace it by the null condition the model was trained with under condition dropout), or,
    for the batched pass, a BoolTensor (B,) per sample. ``cond`` holds the condition (e.g. the stage-3 U-Net's
    reference features, audio, pose and blink), tensors with the batch first. The stage-3 U-Net's
    ``forward(x, t, cond, drop_cond)`` fits with a small lambda that concatenates x_t and the reference
    features.
    """

    def __call__(self, x_t: Tensor, t: Tensor, drop_cond: bool | Tensor, **cond: Any) -> Tensor: ...


def guided_denoiser(
    model: ConditionalDenoiser,
    cond: Mapping[str, Any] | None = None,
    scale: float = 1.0,
    batched: bool = True,
) -> Callable[[Tensor, Tensor], Tensor]:
    """``denoise(x_t, t)`` = uncond + scale (cond - uncond) (Ho & Salimans 2022, eq. 6, with w = scale - 1).

    ``scale`` 1 makes exactly one conditional pass and no unconditional one. Otherwise, ``batched`` makes
    one pass of 2B samples (x_t, t and every tensor of ``cond`` repeated along the batch; ``drop_cond`` a
    (2B,) mask, True on the second half), which needs a model that accepts a per-sample mask; unbatched makes
    two passes of B. The formula is linear in the output, so it applies to eps, x0 and v predictions alike.
    """
    cond = dict(cond or {})

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        if scale == 1.0:
            return model(x_t, t, drop_cond=False, **cond)
        if batched:
            batch = x_t.shape[0]
            doubled = {k: torch.cat([v, v]) if isinstance(v, Tensor) else v for k, v in cond.items()}
            drop = torch.arange(2 * batch, device=x_t.device) >= batch
            conditional, unconditional = model(
                torch.cat([x_t, x_t]), torch.cat([t, t]), drop_cond=drop, **doubled
            ).chunk(2)
        else:
            conditional = model(x_t, t, drop_cond=False, **cond)
            unconditional = model(x_t, t, drop_cond=True, **cond)
        return unconditional + scale * (conditional - unconditional)

    return denoise
