"""Samplers by name, so a config (or a sweep) picks one: ``make_sampler("ddim", schedule, num_steps=20)``.

"ddim", "ddpm" and "dpm_solver" sample a diffusion-trained network; "flow_euler" and "flow_heun" a
flow-matching one (`flow.FlowSampler`)."""

from __future__ import annotations

from dawn_lightning.diffusion.dpm_solver import DPMSolverSampler
from dawn_lightning.diffusion.flow import FlowSampler
from dawn_lightning.diffusion.parametrization import Prediction
from dawn_lightning.diffusion.samplers import DDIMSampler, DDPMSampler, Sampler, Spacing
from dawn_lightning.diffusion.schedules import NoiseSchedule

DIFFUSION_SAMPLERS = ("ddim", "ddpm", "dpm_solver")
FLOW_SAMPLERS = ("flow_euler", "flow_heun")
SAMPLER_NAMES = (*DIFFUSION_SAMPLERS, *FLOW_SAMPLERS)
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
    "flow_shift": 1.0,  # flow samplers: > 1 spends more steps near the noise (`flow.flow_times`)
}


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    prediction: Prediction = "eps",
    num_steps: int = 20,
    eta: float = 1.0,
    spacing: Spacing = "reference",
    reference_alpha_offset: bool = False,
    flow_shift: float = 1.0,
) -> Sampler | FlowSampler:
    """A sampler of ``schedule``: "ddim" (with ``eta``), "ddpm" (respaced to ``num_steps``) or "dpm_solver"
    (DPM-Solver++(2M), deterministic; ``eta`` unused). ``reference_alpha_offset`` (DDIM only) reproduces the
    DAWN reference's off-by-one alpha_bar (see `DDIMSampler`), as its released weights were sampled.
    "flow_euler" / "flow_heun": a `FlowSampler` (``schedule``, ``prediction``, ``eta`` and ``spacing``
    unused)."""
    if name in FLOW_SAMPLERS:
        return FlowSampler(num_steps, name.removeprefix("flow_"), flow_shift)
    if reference_alpha_offset and name != "ddim":
        raise ValueError(f"reference_alpha_offset is a DDIM setting; sampler {name!r} has no such option")
    if name == "ddim":
        return DDIMSampler(schedule, prediction, num_steps, eta, spacing, reference_alpha_offset)
    if name == "ddpm":
        return DDPMSampler(schedule, prediction, num_steps, spacing)
    if name == "dpm_solver":
        return DPMSolverSampler(schedule, prediction, num_steps, spacing)
    raise ValueError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLER_NAMES)}")


def sampler_from_settings(
    settings: dict, schedule: NoiseSchedule, prediction: Prediction
) -> Sampler | FlowSampler:
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
        settings.get("flow_shift", 1.0),
    )


def check_sampler_objective(name: str, objective: str) -> None:
    """A flow-matching network needs a flow sampler, a diffusion network a diffusion one."""
    wanted = FLOW_SAMPLERS if objective == "flow" else DIFFUSION_SAMPLERS
    if name not in wanted:
        raise ValueError(
            f"sampler.name={name} cannot sample a network trained with objective {objective!r}: "
            f"use one of {', '.join(wanted)}"
        )
