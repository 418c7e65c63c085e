"""LPIPS as a torchmetrics Metric that never downloads.

The ``lpips`` package ships its calibrated linear layers; its AlexNet backbone normally comes from
torchvision's download. Here the backbone loads from a local torchvision ``alexnet`` state dict
(``backbone_weights``); without one the backbone is random and the metric says so in its name
(``lpips_random_backbone``), drawn from a fixed seed: its values then compare between this project's runs but
not with published LPIPS numbers.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import torch
from torchmetrics import Metric

log = logging.getLogger(__name__)
RANDOM_BACKBONE_SEED = 0


@cache
def _warn_random_backbone(setting: str) -> None:
    log.warning(
        f"LPIPS has no backbone weights ({setting} is not set): it runs on a random AlexNet "
        "and is logged as lpips_random_backbone; set it to a local torchvision alexnet-owt-7be5be79.pth "
        "for comparable numbers"
    )


def build_lpips(backbone_weights: str | None = None, setting: str = "model.lpips_weights") -> torch.nn.Module:
    """An eval-mode, frozen ``lpips.LPIPS(net="alex")`` with its backbone from a local file (or random);
    ``setting`` names the config key of the file in messages."""
    import warnings

    import lpips

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # lpips calls torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(RANDOM_BACKBONE_SEED)  # a fixed random backbone: two evaluations' values compare
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    if backbone_weights is None:
        _warn_random_backbone(setting)
    else:
        path = Path(backbone_weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"{setting}: {path} does not exist (torchvision's AlexNet "
                f"ImageNet weights, alexnet-owt-7be5be79.pth, copied to a local path)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        slices = {}
        for slice_name, block in model.net.named_children():
            for index, _ in block.named_children():
                for key in ("weight", "bias"):
                    if f"{index}.{key}" in features:
                        slices[f"{slice_name}.{index}.{key}"] = features[f"{index}.{key}"]
        missing, _ = model.net.load_state_dict(slices, strict=False)
        if missing:
            raise ValueError(
                f"{setting}: {path} is not a torchvision alexnet state dict (missing {missing[:3]}...)"
            )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


class LPIPS(Metric):
    """Mean LPIPS distance between predictions and targets, images (B, 3, H, W) in [0, 1]."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, backbone_weights: str | None = None, setting: str = "model.lpips_weights", **kwargs):
        super().__init__(**kwargs)
        self.net = build_lpips(backbone_weights, setting)
        self.random_backbone = backbone_weights is None
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def name(self) -> str:
        return "lpips_random_backbone" if self.random_backbone else "lpips"

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        distance = self.net(prediction * 2 - 1, target * 2 - 1).flatten()
        self.total += distance.double().sum()
        self.count += distance.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()
