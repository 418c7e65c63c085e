"""Samplers by name, so a config (or a sweep) picks one: ``make_sampler("ddim", schedule, num_steps=20)``."""

from __future__ import annotations

from dawn_lightning.diffusion.dpm_solver import DPMSolverSampler
from dawn_lightning.diffusion.parametrization import Prediction
from dawn_lightning.diffusion.samplers import DDIMSampler, DDPMSampler, Sampler, Spacing
from dawn_lightning.diffusion.schedules import NoiseSchedule

SAMPLER_NAMES = ("ddim", "ddpm", "dpm_solver")
# Stage 3's sampling settings when a config or checkpoint names none: DAWN's (DDIM, 20 steps, eta 1).
DEFAULT_SAMPLER = {
    "name": "ddim",
    "num_steps": 20,
    "eta": 1.0,
    "guidance_scale": 1.0,
    "dynamic_threshold": None,
    "spacing": "reference",  # the timesteps of a few-step run (see `sampling_timesteps`)
    "reference_alpha_offset": False,  # DDIM: the DAWN reference's off-by-one alpha_bar (imported weights)
    "temporal_smoothing": 0.0,  # sigma in frames of a Gaussian filter over the sampled motion (DAWN: none)
}


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


def sampler_from_settings(settings: dict, schedule: NoiseSchedule, prediction: Prediction) -> Sampler:
    """`make_sampler` from a stage-3 settings dict (`DEFAULT_SAMPLER`'s keys); the reference's alpha_bar
    offset is a DDIM detail, ignored for the other samplers."""
    return make_sampler(
        settings["name"],
        schedule,
        prediction,
        settings["num_steps"],
        settings["eta"],
        settings["spacing"],
        bool(settings["reference_alpha_offset"]) and settings["name"] == "ddim",
    )
