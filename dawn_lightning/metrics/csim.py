"""CSIM: identity cosine similarity between the source frame and each generated frame, with a face-recognition
network from a local file that maps faces (N, 3, 112, 112), RGB in [-1, 1], to embeddings (N, d): an ArcFace
ONNX file as the literature uses (e.g. insightface's ``w600k_r50.onnx``, run by onnxruntime) or a TorchScript
file (e.g. an ArcFace exported with ``torch.jit.trace``). The frames are resized whole to 112 px (a face crop
of a store or the face-crop path), not aligned by landmarks as insightface does before embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from dawn_lightning.metrics.weights import WeightsFormatError, existing_file, load_torchscript

WHAT = "a face-recognition network: faces (N, 3, 112, 112) in [-1, 1] -> (N, d)"
ARCFACE_HINT = (
    "an ArcFace ONNX file, e.g. insightface's buffalo_l w600k_r50.onnx (github.com/deepinsight/insightface)"
)


class OnnxFaceRecognition(torch.nn.Module):
    """An ONNX face-recognition model run by onnxruntime on the CPU: faces (N, 3, 112, 112) -> (N, d)."""

    def __init__(self, path: str | Path, setting: str = "metrics.csim.weights"):
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(
                f"{setting}: an .onnx file needs onnxruntime (pip install -e '.[eval]')"
            ) from None
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own errors: keep their first line
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WeightsFormatError(f"{setting}: {path} is not a readable ONNX model ({first})") from None
        self.input = self.session.get_inputs()[0].name

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(faces.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input: array})[0]).to(faces.device)


def load_face_recognition(path: str, setting: str = "metrics.csim.weights") -> torch.nn.Module:
    """The CSIM network of ``path``: an .onnx file through onnxruntime, anything else as TorchScript."""
    if str(path).lower().endswith(".onnx"):
        return OnnxFaceRecognition(existing_file(path, setting, ARCFACE_HINT), setting).eval()
    return load_torchscript(path, setting, WHAT)


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
