"""A2V 3-D U-Net: shapes over frame counts and resolutions, gradients, condition dropout, the temporal
receptive field of the banded attention, the two-key cross-attention, and fidelity to the DAWN reference
(golden file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from dawn_lightning.models.audio_to_motion.blocks import FrameConv3d, FrameConvTranspose3d
from dawn_lightning.models.audio_to_motion.conditioning import (
    FaceRegionEncoder,
    NullOrTokenAttention,
    layer_norm_last,
)
from dawn_lightning.models.audio_to_motion.unet3d import UNet3D
from dawn_lightning.released.mapping import load_checked, map_a2v
from dawn_lightning.tensors.boxes import box_mask

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference/golden/unet3d_small.safetensors"
SMALL = dict(
    dim=8,
    dim_mults=(1, 2, 4, 8),
    channels=5,
    cond_audio=4,
    attn_heads=2,
    attn_dim_head=8,
    spatial_dim_head=8,
    cross_heads=2,
    cross_dim_head=4,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(net: UNet3D, batch: int, frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random (x, t, audio, pose, blink) for ``net``."""
    gen = torch.Generator().manual_seed(seed)
    audio_dim, pose_dim, blink_dim = net.cond_dims
    return (
        torch.randn(batch, net.channels, frames, size, size, generator=gen),
        torch.randint(0, 1000, (batch,), generator=gen),
        torch.randn(batch, frames, audio_dim, generator=gen),
        torch.randn(batch, frames, pose_dim, generator=gen),
        torch.randn(batch, frames, blink_dim, generator=gen),
    )


@pytest.mark.parametrize(("frames", "size"), [(1, 16), (20, 16), (40, 8), (77, 8), (2, 32)])
def test_output_shape(frames: int, size: int):
    torch.manual_seed(0)
    net = UNet3D(**SMALL).eval()
    with torch.no_grad():
        out = net(*inputs(net, 2, frames, size))
    assert out.shape == (2, 3, frames, size, size)
    assert torch.isfinite(out).all()


def test_static_channels_once_per_clip_equal_repeating_them():
    torch.manual_seed(0)
    net = UNet3D(**SMALL).eval()
    x, t, audio, pose, blink = inputs(net, 2, 7, 8)
    static = x[:, 2:, 0]
    repeated = torch.cat([x[:, :2], static[:, :, None].expand(-1, -1, 7, -1, -1)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            net(x[:, :2], t, audio, pose, blink, static=static),
            net(repeated, t, audio, pose, blink),
            atol=1e-4,
            rtol=1e-4,
        )
    with pytest.raises(ValueError, match="input channels"):
        net(x[:, :3], t, audio, pose, blink, static=static)


def test_frame_convolutions_equal_conv3d_and_keep_channels_last_memory():
    """The blocks pass videos in channels_last_3d memory, whose frames are channels-last views for conv2d."""
    torch.manual_seed(0)
    for frame_conv, dense in (
        (FrameConv3d(6, 5, (1, 3, 3), padding=(0, 1, 1)), nn.Conv3d(6, 5, (1, 3, 3), padding=(0, 1, 1))),
        (
            FrameConvTranspose3d(6, 5, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
            nn.ConvTranspose3d(6, 5, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
        ),
    ):
        dense.load_state_dict(frame_conv.state_dict())
        x = torch.randn(2, 6, 4, 9, 9)
        for layout in (x, x.contiguous(memory_format=torch.channels_last_3d)):
            out = frame_conv(layout)
            assert out.is_contiguous(memory_format=torch.channels_last_3d)
            torch.testing.assert_close(out, dense(x), atol=1e-5, rtol=1e-5)
    net = UNet3D(**SMALL).eval()
    with torch.no_grad():
        assert net(*inputs(net, 1, 3, 8)).is_contiguous()  # the output leaves in the default layout


def test_config_rebuilds_the_network():
    torch.manual_seed(0)
    net = UNet3D(**SMALL, window=3)
    rebuilt = UNet3D.from_config(net.config)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    assert rebuilt.config == net.config
    assert all(isinstance(v, int | bool | list | None) for v in net.config.values())


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet3D(**SMALL)
    x, t, audio, pose, blink = inputs(net, 2, 6, 8)
    drop = torch.zeros(2, 6, dtype=torch.bool)
    drop[0, 1] = drop[1, 4] = True
    net(x, t, audio, pose, blink, drop_mask=drop).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_null_condition_only_learns_from_dropped_frames():
    torch.manual_seed(0)
    net = UNet3D(**SMALL)
    net(*inputs(net, 1, 4, 8)).sum().backward()
    assert net.null_cond_emb.grad is None


@pytest.mark.parametrize("learn_null_cond", [True, False])
def test_all_dropped_ignores_condition_values(learn_null_cond: bool):
    torch.manual_seed(0)
    net = UNet3D(**SMALL, learn_null_cond=learn_null_cond).eval()
    x, t, audio, pose, blink = inputs(net, 2, 5, 8)
    dropped = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        first = net(x, t, audio, pose, blink, drop_mask=dropped)
        second = net(x, t, audio.neg(), pose * 3, blink + 1, drop_mask=torch.ones(2, 5, dtype=torch.bool))
        conditioned = net(x, t, audio, pose, blink)
    torch.testing.assert_close(first, second, rtol=0, atol=1e-6)
    assert (first - conditioned).abs().max() > 1e-4


class FrameGroupNorm(nn.Module):
    """The wrapped GroupNorm applied to each frame on its own: (B, C, F, H, W) -> same shape."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(rearrange(x, "b c f h w -> (b f) c h w"))
        return rearrange(out, "(b f) c h w -> b c f h w", b=x.shape[0])


def test_temporal_receptive_field_is_bounded_by_the_window():
    """Frames interact through the temporal attentions and GroupNorm's clip-wide statistics; with GroupNorm
    made per-frame, changing frame 0's audio reaches only frames <= window * (temporal attentions on a path).
    """
    torch.manual_seed(0)
    window = 2
    net = UNet3D(**SMALL, window=window).eval()
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GroupNorm):
                setattr(module, name, FrameGroupNorm(child))
    x, t, audio, pose, blink = inputs(net, 1, 40, 8)
    changed = audio.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        diff = (net(x, t, audio, pose, blink) - net(x, t, changed, pose, blink)).abs().amax(dim=(0, 1, 3, 4))
    reach = window * net.temporal_depth
    assert net.temporal_depth == 10
    assert diff[reach + 1 :].max() == 0
    assert diff[: reach // 2].min() > 0


def test_two_key_attention_equals_dense_softmax():
    torch.manual_seed(0)
    attn = NullOrTokenAttention(dim=16, context_dim=12, dim_out=8, heads=4, dim_head=8)
    with torch.no_grad():
        for p in (attn.norm.g, attn.q_scale, attn.k_scale, attn.to_out[1].g):
            p.uniform_(0.5, 1.5)
    x, context = torch.randn(3, 5, 16), torch.randn(3, 12)
    q = rearrange(attn.to_q(layer_norm_last(x, attn.norm.g)), "n l (h d) -> n h l d", h=4)
    k, v = rearrange(attn.to_kv(context), "n (two h d) -> two n h 1 d", two=2, h=4)
    null_k, null_v = (t.expand(3, 4, 1, 8) for t in attn.null_kv.unbind(0))
    k, v = torch.cat((null_k, k), dim=2), torch.cat((null_v, v), dim=2)
    q, k = F.normalize(q, dim=-1) * attn.q_scale, F.normalize(k, dim=-1) * attn.k_scale
    dense = ((q @ k.transpose(-1, -2)) * attn.scale).softmax(dim=-1) @ v
    expected = attn.to_out(rearrange(dense, "n h l d -> n l (h d)"))
    torch.testing.assert_close(attn(layer_norm_last(x), context), expected, rtol=1e-5, atol=1e-5)


def test_face_region_encoder():
    boxes = torch.tensor([[0.25, 0.0, 0.75, 0.5]])
    mask = box_mask(boxes, 8, margin=0.0)
    assert mask.shape == (1, 1, 8, 8)
    assert mask.sum() == 16 and mask[0, 0, 0, 2] == 1 and mask[0, 0, 4, 2] == 0 and mask[0, 0, 0, 1] == 0
    assert FaceRegionEncoder()(mask.expand(2, 1, 8, 8)).shape == (2, 16, 2, 2)


def test_bad_inputs_raise():
    net = UNet3D(**SMALL)
    x, t, audio, pose, blink = inputs(net, 1, 3, 8)
    with pytest.raises(ValueError, match="divisible"):
        net(x[..., :6, :6], t, audio, pose, blink)
    with pytest.raises(ValueError, match="audio"):
        net(x, t, audio[:, :2], pose, blink)


@pytest.mark.skipif(not GOLDEN.exists(), reason="reference golden file absent")
def test_matches_reference_golden():
    golden = load_file(GOLDEN)
    # as in a released DAWN_*.pth "diffusion" entry: the U-Net under denoise_fn. and the schedule buffers,
    # mapped (and the schedule checked) by the importer's function
    released = {
        k.replace("state.unet.", "denoise_fn.", 1): v
        for k, v in golden.items()
        if k.startswith("state.unet.")
    } | {k.removeprefix("diffusion."): v for k, v in golden.items() if k.startswith("diffusion.")}
    net = UNet3D(
        dim=8, channels=8, cond_audio=32, attn_heads=2, attn_dim_head=8, window=4, learn_null_cond=False
    ).eval()
    load_checked(net, map_a2v(released), GOLDEN.name)
    cond = golden["input.cond"]
    audio, pose, blink = cond[..., :32], cond[..., 32:38], cond[..., 38:]
    with torch.no_grad():
        for scale in (1, 2):
            out = net.forward_with_cond_scale(golden["input.x"], golden["input.t"], audio, pose, blink, scale)
            torch.testing.assert_close(out, golden[f"output.unet.cond_scale_{scale}"], rtol=0, atol=1e-4)
        # The first denoiser call of the reference's DDIM run: x_T with the features repeated over frames.
        x_t = golden["input.ddim.x_T"]
        features = golden["input.ddim.fea"][:, :, None].expand(-1, -1, x_t.shape[2], -1, -1)
        t = golden["output.ddim.step0.t"]
        out = net(torch.cat((x_t, features), dim=1), t, audio, pose, blink)
        torch.testing.assert_close(out, golden["output.ddim.step0.pred_noise"], rtol=0, atol=1e-4)
