"""The diffusion variant of the stage-2 generator: a small 1-D transformer denoises the whole sequence of
pose/blink deltas from the first frame, conditioned per frame on the audio and on the initial state.

Same interface as PBNet (``config``, ``losses``, ``generate``), so one sweep can compare the two.
Sequences: x (B, N, K), audio (B, N, D), mask (B, N) bool.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dawn_lightning.diffusion import DDIMSampler, NoiseSchedule, training_terms
from dawn_lightning.models.common.relative_position import RelativePositionBias
from dawn_lightning.models.pose_blink.layers import FeedForward, SelfAttention, attention_bias, masked_mse


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x), bias), then x + feed-forward(norm(x))."""

    def __init__(self, width: int, heads: int, ff_size: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, width // heads)
        self.feed_forward = FeedForward(width, ff_size, dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), bias)
        return x + self.feed_forward(self.norm2(x))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) of diffusion steps (Ho et al. 2020; Vaswani et al. 2017)."""
    half = dim // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * rates[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


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
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.heads, self.window = num_heads, window
        self.schedule = NoiseSchedule("cosine", timesteps)
        self.prediction, self.sampling_steps, self.eta = prediction, sampling_steps, eta
        self.input = nn.Linear(state_dim, width)
        self.audio = nn.Linear(audio_dim, width)
        self.initial = nn.Linear(state_dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.bias = RelativePositionBias(num_heads, num_buckets, max_distance)
        self.layers = nn.ModuleList(Block(width, num_heads, ff_size, dropout) for _ in range(num_layers))
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
    ) -> torch.Tensor:
        """The network's output (B, N, K) for noisy deltas x_t at steps t (B,)."""
        length = x_t.shape[1]
        tokens = self.input(x_t) + self.audio(audio) + self.initial(init_state)[:, None]
        tokens = tokens + self.time(timestep_embedding(t, tokens.shape[-1]))[:, None]
        scores = attention_bias(self.bias, length, self.window, mask, x_t.device)
        for block in self.layers:
            tokens = block(tokens, scores)
        return self.output(self.norm(tokens))

    def losses(self, x: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked MSE of the network's output against its target at a random step; ``delta`` is the implied
        clean prediction (B, N, K)."""
        init = x[:, 0]
        delta = (x - x[:, :1]) * mask[..., None]
        terms = training_terms(
            lambda x_t, t: self.denoiser(x_t, t, audio, init, mask), self.schedule, delta, self.prediction
        )
        error = masked_mse(terms["output"], terms["target"], mask)
        return {"diffusion": error, "delta": terms["x0_pred"] * mask[..., None]}

    @torch.no_grad()
    def generate(
        self,
        audio: torch.Tensor,
        init_state: torch.Tensor,
        temperature: float = 1.0,
        seed: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States (B, T, K) for a whole clip: the initial state plus deltas sampled with DDIM."""
        batch, length = audio.shape[:2]
        mask = torch.ones(batch, length, dtype=torch.bool, device=audio.device) if mask is None else mask
        generator = None if seed is None else torch.Generator(device=audio.device).manual_seed(seed)
        shape = (batch, length, init_state.shape[-1])
        x_T = torch.randn(shape, generator=generator, device=audio.device) * temperature
        sampler = DDIMSampler(self.schedule, self.prediction, self.sampling_steps, self.eta)
        delta = sampler.sample(
            lambda x_t, t: self.denoiser(x_t, t, audio, init_state, mask), shape, generator=generator, x_T=x_T
        )
        return init_state[:, None] + delta * mask[..., None]
