"""Gaussian diffusion and flow-matching maths: noise schedules, parametrizations, training terms, samplers
and guidance.

Pure PyTorch (no Lightning, no Hydra): stage modules compose these parts.
"""

from dawn_lightning.diffusion.dpm_solver import DPMSolverSampler
from dawn_lightning.diffusion.flow import FlowSampler, flow_training_terms, logit_normal_times
from dawn_lightning.diffusion.guidance import ConditionalDenoiser, guided_denoiser
from dawn_lightning.diffusion.parametrization import PREDICTIONS, Prediction, predict, target
from dawn_lightning.diffusion.registry import (
    DEFAULT_SAMPLER,
    SAMPLER_NAMES,
    check_sampler_objective,
    make_sampler,
    sampler_from_settings,
)
from dawn_lightning.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    Sampler,
    Spacing,
    StepOutput,
    posterior_coefficients,
    sampling_timesteps,
)
from dawn_lightning.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas
from dawn_lightning.diffusion.temporal_smoothing import smooth_over_time
from dawn_lightning.diffusion.thresholding import dynamic_threshold, process_x0
from dawn_lightning.diffusion.training import training_terms

__all__ = [
    "DEFAULT_SAMPLER",
    "PREDICTIONS",
    "SAMPLER_NAMES",
    "ConditionalDenoiser",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "FlowSampler",
    "NoiseSchedule",
    "Prediction",
    "Sampler",
    "Spacing",
    "StepOutput",
    "check_sampler_objective",
    "cosine_betas",
    "dynamic_threshold",
    "flow_training_terms",
    "guided_denoiser",
    "linear_betas",
    "logit_normal_times",
    "make_sampler",
    "posterior_coefficients",
    "predict",
    "process_x0",
    "sampler_from_settings",
    "sampling_timesteps",
    "smooth_over_time",
    "target",
    "training_terms",
]
