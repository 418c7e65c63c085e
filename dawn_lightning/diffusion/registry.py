"""Samplers by name, so a config (or a sweep) picks one: ``make_sampler("ddim", schedule, num_steps=20)``."""

from __future__ import annotations

from dawn_lightning.diffusion.dpm_solver import DPMSolverSampler
from dawn_lightning.diffusion.parametrization import Prediction
from dawn_lightning.diffusion.samplers import DDIMSampler, DDPMSampler, Sampler, Spacing
from dawn_lightning.diffusion.schedules import NoiseSchedule

SAMPLER_NAMES = ("ddim", "ddpm", "dpm_solver")


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    prediction: Prediction = "eps",
    num_steps: int = 20,
    eta: float = 1.0,
    spacing: Spacing = "reference",
    reference_alpha_offset: bool = False,
) -> Sampler:
    """A sampler of ``schedule``: "ddim" (with ``eta``), "ddpm" (respaced to ``num_steps``) or "dpm_solver"
    (DPM-Solver++(2M), deterministic; ``eta`` unused). ``reference_alpha_offset`` (DDIM only) reproduces the
    DAWN reference's off-by-one alpha_bar (see `DDIMSampler`), as its released weights were sampled."""
    if reference_alpha_offset and name != "ddim":
        raise ValueError(f"reference_alpha_offset is a DDIM setting; sampler {name!r} has no such option")
    if name == "ddim":
        return DDIMSampler(schedule, prediction, num_steps, eta, spacing, reference_alpha_offset)
    if name == "ddpm":
        return DDPMSampler(schedule, prediction, num_steps, spacing)
    if name == "dpm_solver":
        return DPMSolverSampler(schedule, prediction, num_steps, spacing)
    raise ValueError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLER_NAMES)}")
