"""CSIM with a face-recognition model from a local ONNX file (as the literature's ArcFace), run by
onnxruntime: a tiny model built here stands in for it (nothing is downloaded)."""

from __future__ import annotations

import warnings

import pytest
import torch

from dawn_lightning.metrics.csim import IdentitySimilarity, OnnxFaceRecognition, load_face_recognition
from dawn_lightning.metrics.weights import WeightsFormatError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def tiny_face_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 16),
    ).eval()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("csim") / "arcface_tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter: no onnxscript
        torch.onnx.export(
            tiny_face_net(),
            (torch.zeros(1, 3, 112, 112),),
            str(path),
            dynamo=False,
            input_names=["data"],
            output_names=["embedding"],
            dynamic_axes={"data": {0: "n"}, "embedding": {0: "n"}},
        )
    return path


def test_an_onnx_model_embeds_as_the_network_it_was_made_from(onnx_file):
    net = load_face_recognition(str(onnx_file))
    assert isinstance(net, OnnxFaceRecognition)
    faces = torch.rand(3, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(faces), tiny_face_net()(faces), rtol=1e-4, atol=1e-5)


def test_csim_is_one_for_the_source_itself_and_lower_for_other_faces(onnx_file):
    metric = IdentitySimilarity(load_face_recognition(str(onnx_file)))
    source = torch.rand(3, 64, 64)
    metric.update(source, source[None].repeat(4, 1, 1, 1))
    assert float(metric.compute()) == pytest.approx(1.0, abs=1e-5)
    metric.update(source, torch.rand(4, 3, 64, 64))
    assert float(metric.compute()) < 1.0


def test_a_missing_or_foreign_file_names_the_setting(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"metrics\.csim\.weights: .*missing\.onnx does not exist .*ArcFace"
    ):
        load_face_recognition(str(tmp_path / "missing.onnx"))
    (tmp_path / "foreign.onnx").write_bytes(b"not a model")
    with pytest.raises(
        WeightsFormatError, match=r"metrics\.csim\.weights: .*foreign\.onnx is not a readable ONNX"
    ):
        load_face_recognition(str(tmp_path / "foreign.onnx"))
