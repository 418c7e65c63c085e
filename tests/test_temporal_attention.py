"""Banded temporal attention of the A2V U-Net: exactness against dense masked attention, linear memory in F,
RoPE and the T5 relative-position bias."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from dawn_lightning.models.audio_to_motion.temporal_attention import (
    TemporalAttention,
    banded_attention,
    flex_banded_attention,
    set_attention_backend,
)
from dawn_lightning.models.common.relative_position import RelativePositionBias, relative_position_bucket
from dawn_lightning.models.common.rotary import RotaryEmbedding

HEADS, DIM_HEAD = 2, 8
GOLDEN = Path(__file__).resolve().parents[2] / "shared/reference/golden/unet3d_small.safetensors"


pytestmark = pytest.mark.usefixtures("one_thread")


def dense_attention(q, k, v, window, bias=None):
    """The reference's computation: full F x F scores, bias of j - i, -inf outside |i - j| <= window."""
    length = q.shape[-2]
    positions = torch.arange(length)
    offsets = positions[None, :] - positions[:, None]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias(offsets)
    if window is not None:
        scores = scores.masked_fill(offsets.abs() > window, -torch.inf)
    return scores.softmax(-1) @ v


def qkv(length: int, seed: int = 0, requires_grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, HEADS, length, DIM_HEAD, generator=gen).requires_grad_(requires_grad) for _ in range(3)
    ]


def random_bias(seed: int = 0) -> RelativePositionBias:
    torch.manual_seed(seed)
    return RelativePositionBias(HEADS)


CASES = [(1, 40), (7, 40), (40, 40), (41, 10), (77, 20), (200, 40), (50, 0), (30, None)]


@pytest.mark.parametrize("block_size", [None, 8])  # 8: several blocks in every case with F > 8 + 2 window
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize(("length", "window"), CASES)
def test_banded_equals_dense_masked(length, window, with_bias, block_size):
    q, k, v = qkv(length)
    bias = random_bias() if with_bias else None
    out = banded_attention(q, k, v, window, bias, block_size)
    assert out.shape == q.shape
    torch.testing.assert_close(out, dense_attention(q, k, v, window, bias), atol=1e-5, rtol=0)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize(("length", "window"), [(7, 40), (77, 20), (200, 40), (30, None)])
def test_flex_attention_band_equals_dense_masked(length, window, with_bias):
    """The CUDA path (block mask + score modification), run here by PyTorch's eager flex_attention."""
    q, k, v = qkv(length)
    bias = random_bias() if with_bias else None
    out = flex_banded_attention(q, k, v, window, bias)
    torch.testing.assert_close(out, dense_attention(q, k, v, window, bias), atol=1e-5, rtol=0)


def test_the_attention_backend_is_chosen_per_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(TemporalAttention(16, heads=2, dim_head=8, window=3))
    x, bias = torch.randn(1, 16, 12, 2, 2), random_bias()
    with torch.no_grad():  # flex_attention has no backward on the CPU
        sdpa = net[0](x, bias)
        set_attention_backend(net, "flex")
        torch.testing.assert_close(net[0](x, bias), sdpa, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="attention backend must be one of"):
        set_attention_backend(net, "xformers")


@pytest.mark.parametrize("block_size", [1, 3, 16, 1000])
def test_block_size_does_not_change_the_result(block_size):
    q, k, v = qkv(45)
    bias = random_bias()
    out = banded_attention(q, k, v, 6, bias, block_size=block_size)
    torch.testing.assert_close(out, dense_attention(q, k, v, 6, bias), atol=1e-5, rtol=0)


def test_bfloat16_follows_float32():
    q, k, v = qkv(120)
    bias = random_bias()
    out = banded_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 20, bias)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), banded_attention(q, k, v, 20, bias), atol=5e-2, rtol=0)


def test_bias_table_equals_bias_callable():
    q, k, v = qkv(77)
    bias = random_bias()
    table = bias(torch.arange(-50, 51))  # wider than the window: its centre is used
    torch.testing.assert_close(banded_attention(q, k, v, 20, table), banded_attention(q, k, v, 20, bias))
    with pytest.raises(ValueError, match="2R"):
        banded_attention(q, k, v, 20, table[:, 40:61])
    with pytest.raises(ValueError, match="window"):
        banded_attention(q, k, v, -1)


def test_banded_gradients_equal_dense():
    length, window = 77, 20
    q, k, v = qkv(length, requires_grad=True)
    bias = random_bias()
    (banded_attention(q, k, v, window, bias) * torch.linspace(-1, 1, DIM_HEAD)).sum().backward()
    banded = [t.grad.clone() for t in (q, k, v, bias.relative_attention_bias.weight)]
    for t in (q, k, v, bias.relative_attention_bias.weight):
        t.grad = None
    (dense_attention(q, k, v, window, bias) * torch.linspace(-1, 1, DIM_HEAD)).sum().backward()
    dense = [t.grad for t in (q, k, v, bias.relative_attention_bias.weight)]
    for got, want in zip(banded, dense, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class LargestOutput(TorchDispatchMode):
    """Records the largest number of elements of any op output (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, tuple | list) else [out]:
            if isinstance(item, torch.Tensor):
                self.numel = max(self.numel, item.numel())
        return out


def largest_tensor(run, length: int) -> int:
    with LargestOutput() as mode:
        run(length)
    return mode.numel


def attention_step(window):
    def run(length):
        q, k, v = qkv(length, requires_grad=True)
        banded_attention(q, k, v, window, random_bias()).sum().backward()

    return run


def test_memory_grows_linearly_with_frames():
    # Training path (a learned bias needs its gradient): scores are materialised block by block.
    banded = largest_tensor(attention_step(10), 400) / largest_tensor(attention_step(10), 100)
    dense = largest_tensor(attention_step(None), 400) / largest_tensor(attention_step(None), 100)
    assert banded < 6
    assert dense > 12  # the instrument sees the F x F scores of full attention

    torch.manual_seed(0)
    module = TemporalAttention(16, HEADS, DIM_HEAD, window=10)

    def module_step(length):
        module(torch.randn(1, 16, length, 2, 2), random_bias()).sum().backward()

    assert largest_tensor(module_step, 400) / largest_tensor(module_step, 100) < 6


@pytest.mark.parametrize("length", [1, 20, 40, 77])
def test_temporal_attention_shapes_and_full_window(length):
    torch.manual_seed(0)
    banded = TemporalAttention(24, HEADS, DIM_HEAD, window=40)
    full = TemporalAttention(24, HEADS, DIM_HEAD, window=None)
    full.load_state_dict(banded.state_dict())
    x = torch.randn(2, 24, length, 3, 2)
    bias = random_bias()
    out = banded(x, bias)
    assert out.shape == x.shape
    if length <= 41:
        torch.testing.assert_close(out, full(x, bias), atol=1e-5, rtol=0)
    wide = TemporalAttention(24, HEADS, DIM_HEAD, window=length)
    wide.load_state_dict(banded.state_dict())
    torch.testing.assert_close(wide(x, bias), full(x, bias), atol=1e-5, rtol=0)


def test_temporal_attention_uses_the_reference_parameter_names():
    attention = TemporalAttention(64)  # DAWN: 8 heads x 32 dims, rotary dim min(32, dim_head)
    shapes = {name: tuple(t.shape) for name, t in attention.state_dict().items()}
    assert shapes == {"to_qkv.weight": (768, 64), "to_out.weight": (64, 256), "rotary_emb.freqs": (16,)}
    assert tuple(RelativePositionBias().relative_attention_bias.weight.shape) == (32, 8)


@pytest.mark.skipif(not GOLDEN.exists(), reason="reference golden vectors not present")
def test_reference_weights_load_strictly():
    state = load_file(GOLDEN)  # the reference U-Net: temporal attention 2 heads x 8, window 4
    prefix = "state.unet.init_temporal_attn.fn.fn.fn."
    attention = TemporalAttention(8, heads=2, dim_head=8, window=4)
    attention.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    assert torch.equal(state[prefix + "rotary_emb.freqs"], RotaryEmbedding(8).freqs)
    table = state["state.unet.time_rel_pos_bias.relative_attention_bias.weight"]
    RelativePositionBias(heads=2).load_state_dict({"relative_attention_bias.weight": table})


def test_rotary_scores_depend_only_on_the_offset():
    gen = torch.Generator().manual_seed(0)
    rotary = RotaryEmbedding(8)
    q, k = torch.randn(2, 1, 12, generator=gen)  # the same vector at every position, 4 features unrotated
    length = 30
    scores = rotary(q.expand(length, 12)) @ rotary(k.expand(length, 12)).T
    for shift in (1, 7):
        torch.testing.assert_close(scores[shift:, shift:], scores[:-shift, :-shift], atol=1e-4, rtol=0)
    assert not torch.allclose(scores[0, 1], scores[0, 2])


def test_rotary_known_values():
    rotary = RotaryEmbedding(4, theta=100.0)  # pair frequencies 1 and 1/10
    x = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0]).expand(3, 5)
    p = torch.arange(3.0)
    expected = torch.stack([p.cos(), p.sin(), -(p / 10).sin(), (p / 10).cos(), torch.full((3,), 5.0)], dim=-1)
    torch.testing.assert_close(rotary(x), expected)
    assert rotary(x.bfloat16()).dtype == torch.bfloat16
    odd_offset = torch.randn(3, 9)[:, 1:]  # not viewable as complex: copied
    torch.testing.assert_close(rotary(odd_offset)[:, 4:], odd_offset[:, 4:])


def test_t5_bucket_known_values():
    # The reference's setting: 32 buckets (16 per sign), exact below 8, log-spaced up to 32.
    offsets = torch.tensor([0, -1, -7, -8, -12, -20, -31, -32, -1000, 1, 7, 8, 12, 20, 1000])
    expected = torch.tensor([0, 1, 7, 8, 10, 13, 15, 15, 15, 17, 23, 24, 26, 29, 31])
    assert torch.equal(relative_position_bucket(offsets, 32, 32), expected)
    # T5's default max distance 128.
    offsets = torch.tensor([-20, -50, -127, -500, 20, 50])
    expected = torch.tensor([10, 13, 15, 15, 26, 29])
    assert torch.equal(relative_position_bucket(offsets, 32, 128), expected)
