"""LPIPS without downloads: zero on identical images, growing with damage, one fixed random backbone, and
clear errors for a missing or foreign backbone file."""

from __future__ import annotations

import pytest
import torch

from dawn_lightning.metrics.lpips import LPIPS


def images(seed: int) -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def score(metric: LPIPS, prediction: torch.Tensor, target: torch.Tensor) -> float:
    metric.reset()
    metric.update(prediction, target)
    return float(metric.compute())


def test_lpips_is_zero_on_identical_images_and_grows_with_noise():
    metric, target = LPIPS(), images(0)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    distances = [score(metric, (target + s * noise).clamp(0, 1), target) for s in (0.0, 0.05, 0.2)]
    assert distances[0] == pytest.approx(0.0, abs=1e-7)
    assert 0 < distances[1] < distances[2]
    assert metric.name == "lpips_random_backbone"


def test_random_backbone_is_the_same_whatever_ran_before():
    torch.manual_seed(123)
    first = score(LPIPS(), images(0), images(1))
    torch.rand(1000)  # another global random state
    before = torch.get_rng_state()
    assert score(LPIPS(), images(0), images(1)) == first
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left where it was


def test_missing_or_foreign_backbone_file_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.lpips\.weights: .*absent\.pth does not exist"):
        LPIPS(str(tmp_path / "absent.pth"), setting="metrics.lpips.weights")
    torch.save({"classifier.1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"model\.lpips_weights: .*other\.pth is not a torchvision alexnet"):
        LPIPS(str(tmp_path / "other.pth"))
