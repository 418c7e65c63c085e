"""Stage-1 losses: pyramid perceptual loss (VGG19 and weight-free fallback), MRAA equivariance and the
mouth-guided region."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
import torchvision

from dawn_lightning.models.common import perceptual
from dawn_lightning.models.common.perceptual import PyramidPerceptualLoss, Vgg19Features
from dawn_lightning.models.motion.equivariance import RandomTPS, equivariance_losses
from dawn_lightning.models.motion.geometry import coordinate_grid
from dawn_lightning.models.motion.region_predictor import box_region_loss, heatmap_moments
from dawn_lightning.tensors.boxes import box_mask


def smooth_image(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Structured RGB images in [0, 1]: random low-resolution noise upsampled bilinearly."""
    low = torch.rand(batch, 3, size // 4, size // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> str:
    """A randomly initialised torchvision VGG19 state dict on disk (no download).

    Only ``features.*`` holds real tensors; a stand-in classifier key checks that the rest is ignored.
    """
    torch.manual_seed(0)
    state = torchvision.models.vgg19(weights=None).state_dict()
    state = {k: v for k, v in state.items() if k.startswith("features.")} | {
        "classifier.0.weight": torch.zeros(1)
    }
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return str(path)


# --- perceptual loss: fallback ------------------------------------------------------------------------------


def test_fallback_is_zero_on_identical_images_and_decreases_towards_target():
    loss = PyramidPerceptualLoss()
    assert not loss.uses_vgg
    target = smooth_image()
    noise = torch.rand(target.shape, generator=torch.Generator().manual_seed(1))
    assert loss(target, target)["perceptual"].item() == pytest.approx(0.0, abs=1e-6)
    values = [loss(t * target + (1 - t) * noise, target)["perceptual"].item() for t in (0.0, 0.5, 0.9)]
    assert values[0] > values[1] > values[2] > 0


def test_fallback_gradient_reaches_prediction_only():
    loss = PyramidPerceptualLoss()
    target = smooth_image().requires_grad_(True)
    prediction = torch.rand(target.shape, requires_grad=True)
    loss(prediction, target)["perceptual"].backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert target.grad is None


def test_fallback_warning_is_logged_once(caplog):
    perceptual._warn_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dawn_lightning"):
        PyramidPerceptualLoss()
        PyramidPerceptualLoss(scales=(1.0, 0.5))
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("dawn_lightning")]
    assert len(messages) == 1
    assert "model.vgg_weights is not set" in messages[0]


# --- perceptual loss: VGG19 ---------------------------------------------------------------------------------


def test_vgg_loss_from_local_weights(vgg_weights):
    loss = PyramidPerceptualLoss(scales=(1.0, 0.5), vgg_weights=vgg_weights)
    assert loss.uses_vgg
    assert all(not p.requires_grad for p in loss.vgg.parameters())
    loss.train()
    assert not loss.vgg.training
    target = smooth_image()
    prediction = torch.rand(target.shape, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert loss(target, target)["perceptual"].item() == 0.0
    value = loss(prediction, target)["perceptual"]
    assert value.item() > 0
    value.backward()
    assert prediction.grad.abs().sum() > 0


def test_vgg_features_match_torchvision_layers(vgg_weights):
    state = torch.load(vgg_weights, weights_only=True)
    reference = torchvision.models.vgg19(weights=None).features
    reference.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    )
    image = smooth_image()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference[:30]((image - mean) / std)  # ends at relu5_1
        features = Vgg19Features(vgg_weights)(image)
    assert [f.shape[1] for f in features] == [64, 128, 256, 512, 512]
    torch.testing.assert_close(features[-1], expected)


def test_missing_vgg_weights_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.vgg_weights"):
        PyramidPerceptualLoss(vgg_weights=str(tmp_path / "absent.pth"))


def test_wrong_vgg_weights_name_the_file(tmp_path):
    path = tmp_path / "not-vgg.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not-vgg.pth"):
        Vgg19Features(str(path))


# --- RandomTPS ----------------------------------------------------------------------------------------------


def test_zero_sigma_transform_is_identity():
    transform = RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0)
    frame = torch.rand(2, 3, 12, 16)
    coords = torch.rand(2, 7, 2) * 2 - 1
    torch.testing.assert_close(transform.warp_coordinates(coords), coords)
    torch.testing.assert_close(transform.transform_frame(frame), frame, atol=1e-5, rtol=0)
    torch.testing.assert_close(transform.jacobian(coords), torch.eye(2).expand(2, 7, 2, 2))


def test_jacobian_matches_finite_differences():
    transform = RandomTPS(3, sigma_affine=0.2, sigma_tps=0.3, generator=torch.Generator().manual_seed(0))
    coords = torch.rand(3, 20, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    eps = 1e-6
    columns = []
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = eps
        diff = transform.warp_coordinates(coords + step) - transform.warp_coordinates(coords - step)
        columns.append(diff / (2 * eps))
    numeric = torch.stack(columns, dim=-1)  # (B, N, 2 outputs, 2 inputs)
    torch.testing.assert_close(transform.jacobian(coords), numeric, atol=1e-6, rtol=1e-6)


def test_transform_frame_samples_at_warped_coordinates():
    """A linear image is interpolated exactly, so the warped frame is that image evaluated at warp(grid)."""
    transform = RandomTPS(2, sigma_affine=0.1, sigma_tps=0.05, generator=torch.Generator().manual_seed(2))
    height, width = 24, 20
    grid = coordinate_grid(height, width)
    image = torch.stack([grid[..., 0], grid[..., 1], 0.3 * grid[..., 0] - 0.7 * grid[..., 1]])
    frame = image.expand(2, -1, -1, -1)
    warped = transform.warp_coordinates(grid.reshape(1, -1, 2)).reshape(2, height, width, 2)
    expected = torch.stack([warped[..., 0], warped[..., 1], 0.3 * warped[..., 0] - 0.7 * warped[..., 1]], 1)
    inside = (warped.abs() <= 1).all(-1)[:, None].expand_as(expected)  # reflection padding elsewhere
    assert inside.float().mean() > 0.5
    result = transform.transform_frame(frame)
    torch.testing.assert_close(result[inside], expected[inside], atol=1e-5, rtol=0)
    assert (result - frame).abs().max() > 0.01


def test_seeded_transform_is_deterministic():
    coords = torch.rand(4, 5, 2) * 2 - 1
    first, second = (RandomTPS(4, generator=torch.Generator().manual_seed(7)) for _ in range(2))
    torch.testing.assert_close(first.warp_coordinates(coords), second.warp_coordinates(coords))
    other = RandomTPS(4, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(first.warp_coordinates(coords), other.warp_coordinates(coords))


# --- equivariance losses ------------------------------------------------------------------------------------


def region_params(batch: int = 2, regions: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shift = torch.rand(batch, regions, 2, generator=generator) * 1.6 - 0.8
    affine = torch.eye(2) + 0.2 * torch.randn(batch, regions, 2, 2, generator=generator)
    return {"shift": shift, "affine": affine}


def test_equivariance_zero_for_identity_transform():
    params = region_params()
    losses = equivariance_losses(params, params, RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0))
    assert losses["equivariance_shift"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["equivariance_affine"].item() == pytest.approx(0.0, abs=1e-6)


def test_equivariance_zero_for_params_that_follow_the_warp():
    transform = RandomTPS(2, sigma_affine=0.1, sigma_tps=0.05, generator=torch.Generator().manual_seed(4))
    transformed = region_params()
    original = {
        "shift": transform.warp_coordinates(transformed["shift"]),
        "affine": transform.jacobian(transformed["shift"]) @ transformed["affine"],
    }
    losses = equivariance_losses(transformed, original, transform)
    assert losses["equivariance_shift"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["equivariance_affine"].item() == pytest.approx(0.0, abs=1e-5)


def test_equivariance_positive_and_differentiable_for_random_transform():
    transform = RandomTPS(2, generator=torch.Generator().manual_seed(5))
    params = {k: v.requires_grad_(True) for k, v in region_params().items()}
    losses = equivariance_losses(params, params, transform)
    assert losses["equivariance_shift"].item() > 0
    assert losses["equivariance_affine"].item() > 0
    (losses["equivariance_shift"] + losses["equivariance_affine"]).backward()
    assert params["shift"].grad.abs().sum() > 0
    assert params["affine"].grad.abs().sum() > 0


def box_heatmap(boxes: torch.Tensor, size: int = 128) -> torch.Tensor:
    """(B, 4) normalised boxes -> (B, 1, size, size) heatmaps uniform over each box's pixels."""
    mask = box_mask(boxes, size, margin=0.0)
    return mask / mask.sum(dim=(2, 3), keepdim=True)


def test_box_region_loss_is_zero_for_a_region_that_is_the_box():
    boxes = torch.tensor([[0.375, 0.5625, 0.625, 0.6875], [0.125, 0.25, 0.5, 0.75]])  # on pixel edges
    regions = heatmap_moments(box_heatmap(boxes))
    assert box_region_loss(regions, boxes).item() == pytest.approx(0.0, abs=5e-4)


def test_box_region_loss_grows_with_the_offset_and_the_opening():
    box = torch.tensor([[0.40, 0.55, 0.60, 0.60]])
    regions = heatmap_moments(box_heatmap(box))
    shifted = [box_region_loss(regions, box + torch.tensor([0.0, d, 0.0, d])).item() for d in (0.05, 0.1)]
    opened = [box_region_loss(regions, box + torch.tensor([0.0, 0.0, 0.0, d])).item() for d in (0.05, 0.1)]
    assert 0.04 < shifted[0] < shifted[1] and 0.005 < opened[0] < opened[1]


def test_box_region_loss_guides_region_zero_only():
    heatmap = torch.rand(2, 3, 16, 16).flatten(2).softmax(-1).unflatten(2, (16, 16)).requires_grad_(True)
    box_region_loss(heatmap_moments(heatmap), torch.tensor([[0.4, 0.5, 0.6, 0.6]] * 2)).backward()
    assert heatmap.grad[:, 0].abs().sum() > 0 and heatmap.grad[:, 1:].abs().sum() == 0
