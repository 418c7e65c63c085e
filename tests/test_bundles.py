"""Model bundles (`dawn-export`, `DawnPipeline.from_pretrained`, `dawn-generate bundle=...`): the Hugging Face
layout, weights only, the same video as the checkpoints, a hub repository id read offline from its cache."""

import json
import shutil

import numpy as np
import pytest
import torch

from dawn_lightning.bundles import BundleError, export_bundle, resolve_bundle
from dawn_lightning.checkpoints import POSE_BLINK, CheckpointError, WrongKindError, read
from dawn_lightning.cli import export as export_cli
from dawn_lightning.pipeline import DawnPipeline
from tests.pipeline_fixtures import generate_config, speech

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(checkpoints, tmp_path_factory):
    return export_bundle(
        tmp_path_factory.mktemp("bundles") / "tiny",
        checkpoints["motion"],
        checkpoints["pose_blink"],
        checkpoints["diffusion"],
        metrics={"lip_sync_proxy": 0.81},
    )


def test_the_bundle_is_the_hugging_face_layout_without_pickles(bundle, checkpoints):
    names = sorted(p.name for p in bundle.iterdir())
    assert names == [
        "README.md",
        "audio_to_motion.safetensors",
        "config.json",
        "motion.safetensors",
        "pose_blink.safetensors",
    ]
    config = json.loads((bundle / "config.json").read_text())
    assert config["format"] == "dawn-lightning-bundle" and config["frame_size"] == 64
    assert config["audio_features"]["kind"] == "logmel" and config["sampler"]["name"]
    assert set(config["network_sizes"]) == {"motion", "pose_blink", "audio_to_motion"}
    assert len(config["statistics"]["pose_blink"]["mean"]) == 8
    stage3 = next(e for e in config["stages"] if e["name"] == "audio_to_motion")
    assert stage3["record"]["motion_ckpt_sha256"] == config["motion_sha256"]
    card = (bundle / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dawn-lightning") and "| lip_sync_proxy | 0.81 |" in card
    assert "## Licence" in card and "from_pretrained" in card
    # the weights are the checkpoint's, tensor for tensor
    original, exported = (
        read(checkpoints["pose_blink"], POSE_BLINK),
        read(bundle / "pose_blink.safetensors", POSE_BLINK),
    )
    assert original.weights.keys() == exported.weights.keys()
    assert all(torch.equal(original.weights[k], exported.weights[k]) for k in original.weights)
    assert exported.record == original.record


def test_from_pretrained_and_dawn_generate_make_the_checkpoints_video(bundle, checkpoints):
    audio = speech(1.0)
    portrait = np.full((64, 64, 3), 128, np.uint8)
    reference = DawnPipeline.from_checkpoints(
        checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"], sampler={"num_steps": 2}
    )(portrait, audio, seed=3)
    loaded = DawnPipeline.from_pretrained(bundle, sampler={"num_steps": 2})(portrait, audio, seed=3)
    np.testing.assert_array_equal(loaded.frames, reference.frames)
    from_config = DawnPipeline.from_config(generate_config(checkpoints, f"bundle={bundle}"))
    assert from_config.names["motion"].endswith("motion.safetensors")  # the bundle, not the checkpoints
    np.testing.assert_array_equal(from_config(portrait, audio, seed=3).frames, reference.frames)


def test_a_hub_repository_loads_offline_from_the_local_cache(bundle, tmp_path, monkeypatch):
    from huggingface_hub import constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--someone--dawn-tiny" / "snapshots" / revision
    shutil.copytree(bundle, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_bundle("someone/dawn-tiny") == snapshot
    pipeline = DawnPipeline.from_pretrained("someone/dawn-tiny", sampler={"num_steps": 2})
    assert pipeline.names["diffusion"].endswith("audio_to_motion.safetensors")
    with pytest.raises(BundleError, match="someone/not-cached: neither a bundle folder nor a hub repository"):
        resolve_bundle("someone/not-cached")
    with pytest.raises(FileNotFoundError, match="no bundle folder there"):
        resolve_bundle(tmp_path / "missing")


def test_bad_bundles_are_named(bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "motion.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"motion.safetensors: truncated or not a safetensors file"):
        DawnPipeline.from_pretrained(broken)
    with pytest.raises(WrongKindError, match="not stage-2 .* weights"):
        read(bundle / "motion.safetensors", POSE_BLINK)
    (broken / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a model bundle"):
        DawnPipeline.from_pretrained(broken)


def test_dawn_export_command(checkpoints, tmp_path, capsys):
    out = tmp_path / "exported"
    args = [str(out), "--motion", str(checkpoints["motion"]), "--pose-blink", str(checkpoints["pose_blink"])]
    args += ["--diffusion", str(checkpoints["diffusion"])]
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"lse": {"c": 1.5, "d": 9.0}, "note": "text is left out"}))
    export_cli.main([*args, "--metrics", str(metrics)])
    assert "config.json" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert "| lse/c | 1.5 |" in card and "note" not in card
    with pytest.raises(SystemExit, match="exported: exists"):
        export_cli.main(args)
    assert not list(tmp_path.glob(".exported.*"))  # no temporary folder left
