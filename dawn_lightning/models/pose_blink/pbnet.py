"""PBNet (DAWN stage 2): a transformer CVAE with one latent per frame that generates head pose and blink
sequences from audio, as deltas from the first frame's state (Cheng et al. 2024, DAWN; ACTOR, Petrovich
et al. 2021). Module and parameter names follow the reference implementation, so its weights load as they are.

Shapes: x (B, N, K) pose/blink states, audio (B, N, D), mask (B, N) bool (True = real frame), latents z
(B, N, latent_dim). Outputs are deltas from x[:, 0], zero on padded frames.
"""

from __future__ import annotations

import math

import torch
from einops import repeat
from torch import nn

from dawn_lightning.models.common.relative_position import RelativePositionBias
from dawn_lightning.models.common.rotary import RotaryEmbedding
from dawn_lightning.models.pose_blink.layers import (
    DecoderLayer,
    GainLayerNorm,
    SelfAttention,
    attention_bias,
    masked_mean,
    masked_mse,
)
from dawn_lightning.tensors.draws import SampleDraws


class SinusoidalPositions(nn.Module):
    """Adds the sinusoidal position encoding of Vaswani et al. 2017 to sequence-first inputs (N, B, C),
    computed for the sequence's length rather than stored for a fixed maximum."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = torch.arange(len(x), device=x.device, dtype=torch.float32)[:, None]
        rates = torch.exp(
            torch.arange(0, self.dim, 2, device=x.device).float() * (-math.log(10000.0) / self.dim)
        )
        table = torch.zeros(len(x), self.dim, device=x.device)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * rates), torch.cos(position * rates)
        return self.dropout(x + table[:, None].to(x.dtype))


class PBNetEncoder(nn.Module):
    """q(z | x, audio): per-frame mean and log-variance (B, N, latent_dim). ``initial_logvar`` (e.g. -4)
    starts the posterior narrow, so z carries the encoder's mean from the first step and the decoder learns
    to use it before it learns to ignore it as noise (None: PyTorch's default initialisation)."""

    def __init__(
        self,
        state_dim: int,
        audio_dim: int,
        pose_latent_dim: int = 64,
        audio_latent_dim: int = 256,
        ff_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        initial_logvar: float | None = None,
    ):
        super().__init__()
        width = audio_latent_dim + 2 * pose_latent_dim
        self.firstposeEmbedding = nn.Linear(state_dim, pose_latent_dim)
        self.poseEmbedding = nn.Linear(state_dim, pose_latent_dim)
        self.audioEmbedding = nn.Linear(audio_dim, audio_latent_dim)
        self.sequence_pos_encoder = SinusoidalPositions(width, dropout)
        layer = nn.TransformerEncoderLayer(width, num_heads, ff_size, dropout, activation="gelu")
        self.seqTransEncoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.mu_layer = nn.Linear(width, audio_latent_dim)
        self.sigma_layer = nn.Linear(width, audio_latent_dim)
        if initial_logvar is not None:
            nn.init.constant_(self.sigma_layer.bias, initial_logvar)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        reference = self.firstposeEmbedding(x[:, :1]).expand(-1, x.shape[1], -1)
        tokens = torch.cat([reference, self.poseEmbedding(x - x[:, :1]), self.audioEmbedding(audio)], dim=-1)
        tokens = self.sequence_pos_encoder(tokens.transpose(0, 1))
        hidden = self.seqTransEncoder(tokens, src_key_padding_mask=~mask).transpose(0, 1)
        return self.mu_layer(hidden), self.sigma_layer(hidden)


class PBNetDecoder(nn.Module):
    """p(x - x_0 | z, x_0, audio): queries from a learnt constant attend to a per-frame memory of the initial
    state, the latent and the audio. ``window`` limits every attention to |i - j| <= window frames, in
    training and generation alike, so sequences longer than the training windows behave the same.

    Nothing in the decoder knows where frame 0 is (its queries are a constant and its positions relative), so
    its output cannot be pinned to 0 there: the reference's generated tracks start with a jump and a
    transient. With ``anchor`` the deltas are the output minus the output at frame 0, zero there by
    construction."""

    def __init__(
        self,
        state_dim: int,
        audio_dim: int,
        pose_latent_dim: int = 64,
        audio_latent_dim: int = 256,
        ff_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dim_head: int = 32,
        dropout: float = 0.1,
        num_buckets: int = 128,
        max_distance: int = 128,
        window: int | None = 200,
        anchor: bool = False,
    ):
        super().__init__()
        width = pose_latent_dim
        self.window, self.anchor = window, anchor
        self.firstposeEmbedding = nn.Linear(state_dim, pose_latent_dim)
        self.audioEmbedding = nn.Linear(audio_dim, audio_latent_dim)
        self.ztimelinear = nn.Linear(pose_latent_dim + 2 * audio_latent_dim, width)
        self.init_proj = nn.Linear(width, width)
        rotary = RotaryEmbedding(min(32, num_heads))
        self.init_norm = GainLayerNorm(width)
        self.init_attn = SelfAttention(width, num_heads, dim_head, RotaryEmbedding(min(32, num_heads)))
        self.time_rel_pos_bias_tgt = RelativePositionBias(num_heads, num_buckets, max_distance)
        self.time_rel_pos_bias_mem = RelativePositionBias(num_heads, num_buckets, max_distance)
        self.layers = nn.ModuleList(
            DecoderLayer(width, num_heads, dim_head, ff_size, dropout, rotary) for _ in range(num_layers)
        )
        self.finallayer = nn.Linear(width, state_dim)

    def forward(
        self,
        x0: torch.Tensor,
        z: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        mask_keys: bool = True,
    ) -> torch.Tensor:
        """x0 (B, K) initial state, z (B, N, latent), audio (B, N, D), mask (B, N) -> deltas (B, N, K).

        ``mask_keys`` keeps padded frames out of every attention (the reference attends to them and only
        zeroes their outputs: ``mask_keys=False`` reproduces that).
        """
        length = z.shape[1]
        reference = repeat(self.firstposeEmbedding(x0), "b c -> b n c", n=length)
        memory = self.ztimelinear(torch.cat([reference, z, self.audioEmbedding(audio)], dim=-1))
        keys = mask if mask_keys else None
        bias_tgt = attention_bias(self.time_rel_pos_bias_tgt, length, self.window, keys, z.device)
        bias_mem = attention_bias(self.time_rel_pos_bias_mem, length, self.window, keys, z.device)
        queries = self.init_proj(torch.zeros_like(memory))
        queries = queries + self.init_attn(self.init_norm(queries), bias_tgt)
        for layer in self.layers:
            queries = layer(queries, memory, bias_tgt, bias_mem)
        out = self.finallayer(queries)
        if self.anchor:
            out = out - out[:, :1]
        return out * mask[..., None]


REFERENCE_RENAMES = (
    ("decoder.init_temporal_attn.fn.norm.", "decoder.init_norm."),
    ("decoder.init_temporal_attn.fn.fn.", "decoder.init_attn."),
    ("decoder.seqTransDecoder.decoder_layers.", "decoder.layers."),
)


def from_reference_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reference PBNet state dict (``transformerreemb5``) under our names; its stored sinusoid tables
    (``*.sequence_pos_encoder.pe``) are dropped, since ours are computed."""
    renamed = {}
    for key, value in state.items():
        if key.endswith("sequence_pos_encoder.pe"):
            continue
        for old, new in REFERENCE_RENAMES:
            if key.startswith(old):
                key = new + key.removeprefix(old)
        renamed[key] = value
    return renamed


class PBNet(nn.Module):
    """The CVAE: ``forward`` (training: encode, reparameterise, decode), ``generate`` (decode z ~ N(0, I)).

    ``state_dim`` is 6 (pose), 2 (blink) or 8 (both); ``audio_dim`` is the audio feature width of the store;
    ``anchor`` pins the deltas to 0 at frame 0 (see `PBNetDecoder`; off reproduces the reference).
    """

    def __init__(
        self,
        state_dim: int,
        audio_dim: int,
        pose_latent_dim: int = 64,
        audio_latent_dim: int = 256,
        ff_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        num_buckets: int = 128,
        max_distance: int = 128,
        window: int | None = 200,
        anchor: bool = False,
        initial_logvar: float | None = None,
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        common = {
            "pose_latent_dim": pose_latent_dim,
            "audio_latent_dim": audio_latent_dim,
            "ff_size": ff_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "dropout": dropout,
        }
        self.encoder = PBNetEncoder(state_dim, audio_dim, initial_logvar=initial_logvar, **common)
        self.decoder = PBNetDecoder(
            state_dim,
            audio_dim,
            num_buckets=num_buckets,
            max_distance=max_distance,
            window=window,
            anchor=anchor,
            **common,
        )
        self.latent_dim = audio_latent_dim

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        mu, logvar = self.encoder(x, audio, mask)
        noise = torch.randn_like(mu) if noise is None else noise
        z = mu + torch.exp(0.5 * logvar) * noise
        return {"delta": self.decoder(x[:, 0], z, audio, mask), "mu": mu, "logvar": logvar}

    def losses(
        self,
        x: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        channel_weights: torch.Tensor | None = None,
        velocity_weights: torch.Tensor | None = None,
        draws: SampleDraws | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms on real frames only: MSE of the deltas from frame 0, MSE of their frame-to-frame
        differences (``velocity``: the smoothness term the reference meant, here with a gradient) and the KL
        divergence of q(z | x, audio) from N(0, I) per latent dimension, each per sample, then averaged over
        the samples; ``delta`` is the prediction (B, N, K); ``channel_weights`` and ``velocity_weights`` (K,)
        weight the channels of the two MSE terms; ``draws``: each sample's posterior noise."""
        noise = None if draws is None else draws.randn(x.shape[1], self.latent_dim).to(x.device)
        out, pairs = self(x, audio, mask, noise), mask[:, 1:] & mask[:, :-1]
        reconstruction = masked_mse(out["delta"], x - x[:, :1], mask, channel_weights)
        speed = out["delta"][:, 1:] - out["delta"][:, :-1]
        velocity = masked_mse(speed, x[:, 1:] - x[:, :-1], pairs, velocity_weights)
        kl_terms = -0.5 * (1 + out["logvar"] - out["mu"] ** 2 - out["logvar"].exp())
        kl = masked_mean(kl_terms, mask)
        return {"reconstruction": reconstruction, "velocity": velocity, "kl": kl, "delta": out["delta"]}

    @torch.no_grad()
    def generate(
        self,
        audio: torch.Tensor,
        init_state: torch.Tensor,
        temperature: float = 1.0,
        seed: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States (B, T, K) for a whole clip at once: init_state (B, K) plus the generated deltas."""
        generator = None if seed is None else torch.Generator(device=audio.device).manual_seed(seed)
        mask = torch.ones(audio.shape[:2], dtype=torch.bool, device=audio.device) if mask is None else mask
        return init_state[:, None] + self.sample_deltas(audio, init_state, mask, temperature, generator)

    def sample_deltas(
        self,
        audio: torch.Tensor,
        init_state: torch.Tensor,
        mask: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Deltas (B, T, K) decoded from latents z ~ N(0, temperature^2 I), differentiable (an adversarial
        term on them trains the decoder to turn prior samples into realistic tracks)."""
        shape = (*audio.shape[:2], self.latent_dim)
        z = torch.randn(shape, generator=generator, device=audio.device) * temperature
        return self.decoder(init_state, z, audio, mask)
