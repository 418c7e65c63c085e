"""CSIM: identity cosine similarity between the source frame and each generated frame, with a face-recognition
network from a local TorchScript file (e.g. an ArcFace exported with ``torch.jit.trace``) that maps aligned
faces (N, 3, 112, 112) in [-1, 1] to embeddings (N, d)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from dawn_lightning.metrics.weights import load_torchscript


def load_face_recognition(path: str, setting: str = "metrics.csim.weights") -> torch.jit.ScriptModule:
    return load_torchscript(
        path, setting, "a face-recognition network: faces (N, 3, 112, 112) in [-1, 1] -> (N, d)"
    )


class IdentitySimilarity(Metric):
    """``update(source (3, H, W), frames (N, 3, H, W))``, images in [0, 1]; ``compute()`` is the mean cosine
    similarity over all frames."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, net: torch.nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        faces = F.interpolate(images.float(), size=(112, 112), mode="bilinear", align_corners=False)
        return self.net(faces * 2 - 1).flatten(1)

    def update(self, source: torch.Tensor, frames: torch.Tensor) -> None:
        similarity = F.cosine_similarity(self.embed(source[None]), self.embed(frames))
        self.total += similarity.double().sum()
        self.count += len(similarity)

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)
