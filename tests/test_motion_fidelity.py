"""Stage 1 against golden vectors made with the DAWN reference code (../shared/reference/golden): the same
weights, mapped as `dawn-import-dawn` maps the released LFG, and inputs must give the same outputs (tolerance
from the vectors' README: atol 1e-4)."""

from pathlib import Path

import pytest
import torch

from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.motion.geometry import symmetric_eig2x2
from dawn_lightning.released.mapping import load_checked, map_lfg

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference/golden/lfg_small.safetensors"
pytestmark = pytest.mark.skipif(not GOLDEN.exists(), reason="reference golden vectors not present")
SMALL = {"block_expansion": 8, "max_features": 64, "num_blocks": 3}


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    tensors = load_file(GOLDEN)
    model = MotionAutoencoder(
        region=SMALL,
        background=SMALL,
        flow=SMALL,
        generator={
            "block_expansion": 8,
            "max_features": 64,
            "num_down_blocks": 2,
            "num_bottleneck_blocks": 1,
        },
    )
    # the released LFG file nests its sub-modules' state dicts: rebuild that, then map it as the importer does
    modules: dict[str, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            module, name = key.removeprefix("state.").split(".", 1)
            modules.setdefault(module, {})[name] = value
    load_checked(model, map_lfg(modules), GOLDEN.name)  # every key and shape of the reference, nothing else
    return model.eval(), tensors


def _regions(t, which):
    return {k: t[f"output.region_predictor.{which}.{k}"] for k in ("heatmap", "shift", "covar", "affine")}


@torch.no_grad()
def test_region_predictor_matches(golden):
    model, t = golden
    for which in ("source", "driving"):
        ours = model.regions(t[f"input.{which}"])
        ref = _regions(t, which)
        for key in ("heatmap", "shift", "covar"):
            torch.testing.assert_close(ours[key], ref[key], atol=1e-4, rtol=0)
        # the affine frame is U sqrt(S): equal up to the sign of each column (eigenvector sign convention)
        torch.testing.assert_close(ours["affine"].abs(), ref["affine"].abs(), atol=1e-4, rtol=0)
        torch.testing.assert_close(ours["affine"] @ ours["affine"].mT, ref["covar"], atol=1e-4, rtol=0)


@torch.no_grad()
def test_background_and_generator_match_given_reference_regions(golden):
    model, t = golden
    source, driving = t["input.source"], t["input.driving"]
    background = model.bg_predictor(source, driving)
    torch.testing.assert_close(background, t["output.bg_predictor"], atol=1e-5, rtol=0)
    motion = model.generator.pixelwise_flow_predictor(
        source, _regions(t, "driving"), _regions(t, "source"), background
    )
    torch.testing.assert_close(motion["grid"], t["output.generator.optical_flow"], atol=1e-4, rtol=0)
    torch.testing.assert_close(motion["occlusion"], t["output.generator.occlusion_map"], atol=1e-4, rtol=0)
    prediction = model.decode(source, motion["grid"], motion["occlusion"])
    torch.testing.assert_close(prediction, t["output.generator.prediction"], atol=1e-4, rtol=0)


@torch.no_grad()
def test_encoder_and_decoder_match(golden):
    model, t = golden
    source = t["input.source"]
    torch.testing.assert_close(model.encode(source).z, t["output.generator.compute_fea"], atol=1e-4, rtol=0)
    frames = model.decode(source, t["input.fwf.optical_flow"], t["input.fwf.occlusion_map"])
    torch.testing.assert_close(frames, t["output.generator.forward_with_flow.prediction"], atol=1e-4, rtol=0)


def test_closed_form_eig_equals_eigh():
    torch.manual_seed(0)
    a = torch.randn(1000, 2, 2, dtype=torch.float64)
    spd = a @ a.mT + 1e-3 * torch.eye(2, dtype=torch.float64)
    values, vectors = symmetric_eig2x2(spd)
    ref_values, ref_vectors = torch.linalg.eigh(spd)
    torch.testing.assert_close(values, ref_values.flip(-1))
    torch.testing.assert_close(vectors.abs(), ref_vectors.flip(-1).abs())  # columns equal up to sign
    torch.testing.assert_close(vectors @ torch.diag_embed(values) @ vectors.mT, spd)
    assert (vectors[..., 0, 0] <= 0).all()  # the documented sign convention
    # isotropic and diagonal matrices, where the angle is undefined, still decompose with finite gradients
    special = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    values, vectors = symmetric_eig2x2(special)
    (values.sum() + vectors.sum()).backward()
    assert torch.isfinite(special.grad).all()
    torch.testing.assert_close(vectors @ torch.diag_embed(values) @ vectors.mT, special.detach())
