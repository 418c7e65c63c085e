"""The diffusion variant of the stage-2 generator: a small 1-D transformer denoises the whole sequence of
pose/blink deltas from the first frame, conditioned per frame on the audio and on the initial state.

Same interface as PBNet (``config``, ``losses``, ``generate``), so one sweep can compare the two. Options
(all off by default, which is the first version of this model):

- ``anchor``: frame 0 is known. The network is shown its delta as 0 at every noise level (inpainting) and
  its clean estimate is shifted to be 0 there; unanchored, nothing tells the network where frame 0 is (its
  positions are relative) and samples start away from the initial state.
- ``start_frames`` = s: each token also gets an embedding of its distance from frame 0, up to s frames.
- ``conv_kernel`` = k: a depthwise temporal convolution in every block (smooth, jitter-free tracks).
- ``audio_context`` = c: the audio does not enter the transformer; a convolution over frames t - c .. t + c
  adds it before the output head, so audio shapes the motion only locally (nods on stressed syllables) and
  the network cannot recognise a training clip from its audio and replay that clip's head drift and blinks,
  which it does on a small data set when the audio is in every token. ``audio_dropout`` drops features of
  the audio embedding in training.
- ``objective``: "diffusion" (the cosine schedule, ``prediction``, DDIM sampling) or "flow" (flow matching on
  the linear path, `diffusion.flow`: the network predicts the velocity, logit-normal times in training, Euler
  steps in sampling; ``prediction``, ``eta`` and ``spacing`` then do not apply). With ``anchor``, frame 0's
  velocity is the one that keeps it on the path to 0, x_t / t, so it reaches exactly 0.

Sequences: x (B, N, K), audio (B, N, D), mask (B, N) bool.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from dawn_lightning.diffusion import DDIMSampler, NoiseSchedule, predict, target, training_terms
from dawn_lightning.diffusion.flow import TIMESCALE, FlowSampler, flow_training_terms, logit_normal_times
from dawn_lightning.diffusion.parametrization import eps_from_x0
from dawn_lightning.models.common.relative_position import RelativePositionBias
from dawn_lightning.models.pose_blink.layers import FeedForward, SelfAttention, attention_bias, masked_mse
from dawn_lightning.tensors.draws import SampleDraws


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x), bias), then (with ``conv_kernel`` > 0) x + a
    depthwise temporal convolution of norm(x) over real frames (Conformer-style, Gulati et al. 2020: local
    smoothing that attention with relative positions learns slowly), then x + feed-forward(norm(x))."""

    def __init__(self, width: int, heads: int, ff_size: int, dropout: float, conv_kernel: int = 0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, width // heads)
        self.feed_forward = FeedForward(width, ff_size, dropout)
        self.conv = None
        if conv_kernel > 0:
            self.norm_conv = nn.LayerNorm(width)
            self.conv = nn.Conv1d(width, width, conv_kernel, padding=conv_kernel // 2, groups=width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), bias)
        if self.conv is not None:
            local = rearrange(self.norm_conv(x) * mask[..., None], "b n c -> b c n")
            x = x + rearrange(self.conv(local), "b c n -> b n c")
        return x + self.feed_forward(self.norm2(x))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) of diffusion steps (Ho et al. 2020; Vaswani et al. 2017)."""
    half = dim // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * rates[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


OBJECTIVES = ("diffusion", "flow")


class PoseDiffusion(nn.Module):
    def __init__(
        self,
        state_dim: int,
        audio_dim: int,
        width: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        ff_size: int = 256,
        dropout: float = 0.0,
        window: int | None = 200,
        num_buckets: int = 32,
        max_distance: int = 128,
        timesteps: int = 1000,
        prediction: str = "eps",
        sampling_steps: int = 20,
        eta: float = 1.0,
        spacing: str = "reference",
        anchor: bool = False,
        conv_kernel: int = 0,
        audio_dropout: float = 0.0,
        audio_context: int | None = None,
        start_frames: int = 0,
        objective: str = "diffusion",
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.objective = objective
        self.heads, self.window = num_heads, window
        self.schedule = NoiseSchedule("cosine", timesteps)
        self.prediction, self.sampling_steps, self.eta = prediction, sampling_steps, eta
        self.spacing, self.anchor = spacing, anchor
        self.input = nn.Linear(state_dim, width)
        self.audio_context = audio_context
        if audio_context is None:
            self.audio = nn.Linear(audio_dim, width)
        else:
            self.audio_local = nn.Sequential(
                nn.Conv1d(
                    audio_dim, width, 2 * audio_context + 1, padding=audio_context, padding_mode="replicate"
                ),
                nn.GELU(),
                nn.Conv1d(width, width, 1),
            )
            self.head = nn.Sequential(nn.Linear(width, width), nn.GELU())
        self.audio_dropout = nn.Dropout(audio_dropout)
        self.initial = nn.Linear(state_dim, width)
        self.start_frames = start_frames
        if start_frames > 0:  # how far each frame is from frame 0, up to start_frames
            self.start = nn.Embedding(start_frames + 1, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.bias = RelativePositionBias(num_heads, num_buckets, max_distance)
        self.layers = nn.ModuleList(
            Block(width, num_heads, ff_size, dropout, conv_kernel) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, state_dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def denoiser(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        init_state: torch.Tensor,
        mask: torch.Tensor,
        draws: SampleDraws | None = None,
    ) -> torch.Tensor:
        """The network's output (B, N, K) for noisy deltas x_t at steps t (B,); in training, the audio dropout
        masks come from ``draws`` when given."""
        length = x_t.shape[1]
        shown = x_t
        if self.anchor:  # frame 0 is known: its delta is 0 at every noise level (inpainting)
            shown = torch.cat([torch.zeros_like(x_t[:, :1]), x_t[:, 1:]], dim=1)
        tokens = self.input(shown) + self.initial(init_state)[:, None]
        if self.start_frames > 0:
            tokens = tokens + self.start(torch.arange(length, device=x_t.device).clamp_max(self.start_frames))
        if self.audio_context is None:
            tokens = tokens + self.drop_audio(self.audio(audio), draws)
        tokens = tokens + self.time(timestep_embedding(t, tokens.shape[-1]))[:, None]
        scores = attention_bias(self.bias, length, self.window, mask, x_t.device)
        for block in self.layers:
            tokens = block(tokens, scores, mask)
        if self.audio_context is None:
            output = self.output(self.norm(tokens))
        else:
            local = self.audio_local(rearrange(audio * mask[..., None], "b n d -> b d n"))
            local = self.drop_audio(rearrange(local, "b c n -> b n c"), draws)
            output = self.output(self.head(self.norm(tokens) + local))
        if not self.anchor:
            return output
        if self.objective == "flow":  # frame 0 stays on the path to 0: x_t = t eps there, so v = x_t / t
            time = (t.to(x_t.dtype) / TIMESCALE).clamp_min(1e-4).view(-1, 1, 1)
            return torch.cat([x_t[:, :1] / time, output[:, 1:]], dim=1)
        alpha, sigma = self.schedule.alpha_sigma(t, x_t.ndim)
        x0, _ = predict(self.prediction, output, x_t, alpha, sigma)
        x0 = x0 - x0[:, :1]
        return target(self.prediction, x0, eps_from_x0(x_t, x0, alpha, sigma), alpha, sigma)

    def drop_audio(self, features: torch.Tensor, draws: SampleDraws | None) -> torch.Tensor:
        """``audio_dropout`` of audio features (B, N, C) in training, each sample's mask from ``draws``."""
        p = self.audio_dropout.p
        if not self.training or p == 0 or draws is None:
            return self.audio_dropout(features)
        keep = draws.rand(*features.shape[1:]).to(features.device) >= p
        return features * keep / (1 - p)

    def losses(
        self,
        x: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        channel_weights: torch.Tensor | None = None,
        velocity_weights: torch.Tensor | None = None,
        draws: SampleDraws | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masked MSE of the network's output against its target at a random step (time, for flow), and of
        the frame-to-frame differences of its implied clean prediction (``velocity``, weighted by the step's
        signal fraction: alpha_t^2, or (1 - t)^2 on the flow path); ``delta`` is that prediction (B, N, K);
        ``channel_weights`` and ``velocity_weights`` (K,) weight the channels of the two terms."""
        init = x[:, 0]
        delta = (x - x[:, :1]) * mask[..., None]
        draws = SampleDraws.fresh(len(x), x.device) if draws is None else draws

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.denoiser(x_t, t, audio, init, mask, draws)

        if self.objective == "flow":
            t, noise = logit_normal_times(draws.randn()), draws.randn(*delta.shape[1:], dtype=delta.dtype)
            terms = flow_training_terms(denoise, delta, noise, t)
            signal = (1 - t.to(x.dtype)).view(-1, 1, 1) ** 2
        else:
            t, noise = (
                draws.randint(self.schedule.num_timesteps),
                draws.randn(*delta.shape[1:], dtype=delta.dtype),
            )
            terms = training_terms(denoise, self.schedule, delta, self.prediction, noise=noise, t=t)
            signal = self.schedule.alpha_sigma(terms["t"], x.ndim)[0] ** 2
        error = masked_mse(terms["output"], terms["target"], mask, channel_weights)
        x0, pairs = terms["x0_pred"] * mask[..., None], mask[:, 1:] & mask[:, :-1]
        # weighted by the signal fraction: at high noise the best estimate of x0 is a smooth mean
        weights = signal if velocity_weights is None else signal * velocity_weights
        velocity = masked_mse(x0[:, 1:] - x0[:, :-1], delta[:, 1:] - delta[:, :-1], pairs, weights)
        return {"diffusion": error, "velocity": velocity, "delta": x0}

    @torch.no_grad()
    def generate(
        self,
        audio: torch.Tensor,
        init_state: torch.Tensor,
        temperature: float = 1.0,
        seed: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States (B, T, K) for a whole clip: the initial state plus deltas sampled with DDIM (Euler steps of
        the velocity for the flow objective)."""
        batch, length = audio.shape[:2]
        mask = torch.ones(batch, length, dtype=torch.bool, device=audio.device) if mask is None else mask
        generator = None if seed is None else torch.Generator(device=audio.device).manual_seed(seed)
        shape = (batch, length, init_state.shape[-1])
        x_T = torch.randn(shape, generator=generator, device=audio.device) * temperature
        if self.objective == "flow":
            sampler = FlowSampler(self.sampling_steps, "euler")
        else:
            sampler = DDIMSampler(self.schedule, self.prediction, self.sampling_steps, self.eta, self.spacing)
        delta = sampler.sample(
            lambda x_t, t: self.denoiser(x_t, t, audio, init_state, mask), shape, generator=generator, x_T=x_T
        )
        return init_state[:, None] + delta * mask[..., None]
