"""Key mapping from the released DAWN state dicts to ours, and a strict check before anything loads.

Each ``map_*`` function takes a state dict as the reference saves it and returns a `Mapped`: the tensors under
our names, where each came from, and the problems found on the way (a derived constant of the file that
differs from ours). `load_checked` then compares it with the module's own state dict and raises one
`StateDictMismatch` that lists every missing, unexpected and mis-shaped key and every problem, or loads all
of it with ``strict=True``. Nothing is ever loaded in part.

- LFG (stage 1): ``{"region_predictor": sd, "bg_predictor": sd, "generator": sd}``; our names are the
  reference's, prefixed by the sub-module.
- A2V (stage 3): the ``diffusion`` entry: ``denoise_fn.*`` (the U-Net, `convert_reference_state_dict`) and the
  twelve noise-schedule buffers, which must equal our 1000-step cosine schedule's.
- PBNet (stage 2): the ``model`` entry (`from_reference_state_dict`); its stored sinusoid tables
  (``*.sequence_pos_encoder.pe``), if present, must be the standard ones, which ours computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from dawn_lightning.diffusion import NoiseSchedule, posterior_coefficients
from dawn_lightning.models.audio_to_motion.unet3d import convert_reference_state_dict
from dawn_lightning.models.pose_blink.pbnet import from_reference_state_dict

LFG_MODULES = ("region_predictor", "bg_predictor", "generator")
UNET_PREFIX = "denoise_fn."
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
PE_SUFFIX = "sequence_pos_encoder.pe"


@dataclass
class Mapped:
    """Tensors under our names, the released name of each, and problems found while mapping."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, value: torch.Tensor, released: str) -> None:
        self.state[key], self.origin[key] = value, released


class StateDictMismatch(ValueError):
    """A released state dict that does not fit the model: every problem at once, nothing loaded."""

    def __init__(
        self,
        source: str,
        missing: list[str] = (),
        unexpected: list[str] = (),
        mismatched: list[str] = (),
        problems: list[str] = (),
    ):
        self.source = source
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.mismatched, self.problems = list(mismatched), list(problems)
        count = len(self.missing) + len(self.unexpected) + len(self.mismatched) + len(self.problems)
        lines = [f"{source}: does not fit the expected model ({count} problems; nothing was loaded)"]
        for title, items in (
            ("missing keys (our names)", self.missing),
            ("unexpected keys (the file's names)", self.unexpected),
            ("keys of the wrong shape", self.mismatched),
            ("other problems", self.problems),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items)
        super().__init__("\n".join(lines))


def check_mapped(module: nn.Module, mapped: Mapped, source: str) -> None:
    """Raises `StateDictMismatch` unless ``mapped`` has just ``module``'s keys and shapes and no problems."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(mapped.state))
    unexpected = sorted(mapped.origin.get(k, k) for k in set(mapped.state) - set(expected))
    mismatched = [
        f"{mapped.origin.get(k, k)}: {tuple(mapped.state[k].shape)} in the file, {tuple(expected[k].shape)} "
        "expected"
        for k in sorted(set(mapped.state) & set(expected))
        if mapped.state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched or mapped.problems:
        raise StateDictMismatch(source, missing, unexpected, mismatched, mapped.problems)


def load_checked(module: nn.Module, mapped: Mapped, source: str) -> nn.Module:
    """`check_mapped`, then loads every tensor (floating point ones as float32) with ``strict=True``."""
    check_mapped(module, mapped, source)
    state = {k: v.float() if v.is_floating_point() else v for k, v in mapped.state.items()}
    module.load_state_dict(state, strict=True)
    return module


def _tensor_problem(
    name: str, value: object, expected: torch.Tensor, atol: float, rtol: float, what: str
) -> str | None:
    if not isinstance(value, torch.Tensor):
        return f"{name}: not a tensor ({type(value).__name__})"
    if value.shape != expected.shape:
        return f"{name}: {tuple(value.shape)} in the file, {tuple(expected.shape)} expected"
    if not torch.allclose(value.double(), expected.double(), rtol=rtol, atol=atol):
        difference = (value.double() - expected.double()).abs().max().item()
        return f"{name}: differs from ours by up to {difference:.3g} (a different {what})"
    return None


# -- stage 1 ------------------------------------------------------------------------------------------------
def map_lfg(modules: Mapping[str, Mapping[str, torch.Tensor]]) -> Mapped:
    """The LFG's three sub-module state dicts -> `MotionAutoencoder`'s names (the same, prefixed)."""
    mapped = Mapped()
    for name, state in modules.items():
        if not isinstance(state, Mapping):
            mapped.problems.append(f"{name}: not a state dict ({type(state).__name__})")
            continue
        for key, value in state.items():
            mapped.add(f"{name}.{key}", value, f"{name}.{key}")
    return mapped


# -- stage 3 ------------------------------------------------------------------------------------------------
def reference_schedule_buffers(num_timesteps: int = 1000) -> dict[str, torch.Tensor]:
    """The reference diffusion's twelve schedule buffers (float32) for our cosine schedule."""
    schedule = NoiseSchedule("cosine", num_timesteps)
    alpha_bar = torch.tensor([schedule.alpha_bar(t) for t in range(-1, num_timesteps)], dtype=torch.float64)
    prev, cur = alpha_bar[:-1], alpha_bar[1:]
    coef_x0, coef_xt, variance = posterior_coefficients(cur, prev)
    buffers = {
        "betas": schedule.betas.double(),  # clipped at 0.9999, as the reference's
        "alphas_cumprod": cur,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": cur.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - cur).sqrt(),
        "log_one_minus_alphas_cumprod": torch.log1p(-cur),
        "sqrt_recip_alphas_cumprod": cur.rsqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / cur - 1).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": coef_x0,
        "posterior_mean_coef2": coef_xt,
    }
    return {k: v.float() for k, v in buffers.items()}


def map_a2v(state: Mapping[str, torch.Tensor]) -> Mapped:
    """The ``diffusion`` state dict of DAWN_*.pth -> `UNet3D`'s names (load into ``MotionDiffusion.unet``).

    The schedule buffers are checked against ours (they are derived, so ours are used); the two output
    heads' cross-attentions, which the reference builds but never calls, are dropped."""
    mapped = Mapped()
    expected = reference_schedule_buffers()
    for key, value in state.items():
        if key.startswith(UNET_PREFIX):
            for ours, tensor in convert_reference_state_dict({key.removeprefix(UNET_PREFIX): value}).items():
                mapped.add(ours, tensor, key)
        elif key in expected:
            problem = _tensor_problem(key, value, expected[key], 1e-6, 1e-5, "noise schedule")
            if problem:
                mapped.problems.append(problem)
        else:
            mapped.add(key, value, key)  # not ours: reported as unexpected
    mapped.problems.extend(f"{key}: missing schedule buffer" for key in SCHEDULE_BUFFERS if key not in state)
    return mapped


# -- stage 2 ------------------------------------------------------------------------------------------------
def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """The reference's stored position table (length, 1, dim): sin at even, cos at odd features."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * rates), torch.cos(position * rates)
    return table[:, None]


def map_pbnet(state: Mapping[str, torch.Tensor]) -> Mapped:
    """A PBNet ``model`` state dict (``transformerreemb5``) -> `PBNet`'s names. Its position tables, if
    stored, are checked against the standard sinusoid (ours is computed, so they are not loaded)."""
    mapped = Mapped()
    for key, value in state.items():
        if key.endswith(PE_SUFFIX):
            shape = getattr(value, "shape", ())
            if len(shape) != 3:
                mapped.problems.append(f"{key}: {tuple(shape)} is not a (length, 1, dim) position table")
                continue
            # float32 rounding of position * rate grows with the position (to ~1e-3 at 20000): a loose
            # tolerance still tells the standard table from any other
            problem = _tensor_problem(key, value, sinusoid_table(shape[0], shape[-1]), 1e-2, 0, "table")
            if problem:
                mapped.problems.append(problem)
            continue
        for ours, tensor in from_reference_state_dict({key: value}).items():
            mapped.add(ours, tensor, key)
    return mapped
