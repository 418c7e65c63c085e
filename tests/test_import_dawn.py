"""`dawn-import-dawn`: the released DAWN checkpoints -> our stage checkpoints.

The released files are not available here; stand-ins are built from the reference's key/shape listing
(../shared/reference/dawn_state_dict_shapes.json) in the released files' nesting, with random or zero
weights and the derived constants (schedule buffers, position tables) the reference computes. They must map
and load strictly; missing, unexpected and mis-shaped keys give one error listing them all; pickled objects
need --trust-pickle. A full-size random set (LFG_128 + DAWN_128 + PBNet pose/blink) converts with the CLI and
generates a short video through `dawn-generate`'s path with `audio_features.model_path` naming a tiny random
1024-wide HuBERT saved as `hubert-large-ls960-ft` (random (T, 1024) features when `transformers` is absent).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import dawn_lightning.pipeline.dawn as pipeline_module
from dawn_lightning.checkpoints import (
    file_sha256,
    load_motion_autoencoder,
    load_motion_diffusion,
    load_pose_blink_generator,
)
from dawn_lightning.cli.generate import generate
from dawn_lightning.cli.import_dawn import main as import_main
from dawn_lightning.config import compose
from dawn_lightning.data.audio_features import features_from_spec
from dawn_lightning.diffusion import NoiseSchedule, make_sampler, sampler_from_settings
from dawn_lightning.models.audio_to_motion.motion_diffusion import MotionDiffusion
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.pose_blink.pbnet import PBNet
from dawn_lightning.pipeline import load_pose_blink_pair
from dawn_lightning.released import conventions as C
from dawn_lightning.released.convert import (
    PickledCheckpointError,
    import_pbnet,
    read_checkpoint,
    seeded_face_encoder,
)
from dawn_lightning.released.mapping import (
    StateDictMismatch,
    load_checked,
    map_a2v,
    map_lfg,
    map_pbnet,
    reference_schedule_buffers,
    sinusoid_table,
)
from tests.pipeline_fixtures import portrait, speech, tiny_hubert, write_wav

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHAPES = SHARED / "reference" / "dawn_state_dict_shapes.json"
GOLDEN_PBNET = SHARED / "reference" / "golden" / "pbnet_small.safetensors"
needs_shapes = pytest.mark.skipif(not SHAPES.exists(), reason="../shared/reference shapes listing absent")
OPT_YAML = "modeltype: cvae\narchiname: transformerreemb5\nnum_heads: 4\nff_size: 128\nmax_distance: 128\n"


def released(name: str, random: bool = False, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """The entries of released file ``name`` (a key of the shapes listing, e.g. "DAWN_128"), each a state
    dict: weights 0.05 N(0, 1) if ``random`` (BatchNorm variances in [0.5, 1.5]) else zeros (cheap, for
    mapping only); the derived constants as the reference computes them."""
    listing = json.loads(SHAPES.read_text())[name]
    generator = torch.Generator().manual_seed(seed)
    schedule = reference_schedule_buffers()
    entries: dict[str, dict[str, torch.Tensor]] = {}
    for entry, shapes in listing.items():
        state = entries[entry] = {}
        for key, (shape, dtype) in shapes.items():
            if dtype == "int64":
                state[key] = torch.zeros(shape, dtype=torch.int64)
            elif key in schedule:
                state[key] = schedule[key]
            elif key.endswith("sequence_pos_encoder.pe"):
                state[key] = sinusoid_table(shape[0], shape[-1])
            elif not random:
                state[key] = torch.zeros(shape)
            elif key.endswith("running_var"):
                state[key] = 0.5 + torch.rand(shape, generator=generator)
            else:
                state[key] = 0.05 * torch.randn(shape, generator=generator)
    return entries


def our_model(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the model, the module the mapped state dict loads into) for a released file's kind."""
    if name.startswith("LFG"):
        net = MotionAutoencoder(**C.MOTION)
        return net, net
    if name.startswith("DAWN"):
        net = MotionDiffusion(**C.MOTION_DIFFUSION, unet=dict(C.UNET))
        return net, net.unet
    net = PBNet(state_dim=6 if name == "PBNet_pose" else 2, **C.PBNET)
    return net, net


def mapped(name: str, entries: dict):
    if name.startswith("LFG"):
        return map_lfg(entries)
    if name.startswith("DAWN"):
        return map_a2v(entries["diffusion"])
    return map_pbnet(entries["model"])


# -- mapping and strict loading ------------------------------------------------------------------------------
@needs_shapes
def test_the_256_px_files_have_the_128_px_keys_and_shapes():
    listing = json.loads(SHAPES.read_text())
    assert listing["LFG_256"] == listing["LFG_128"] and listing["DAWN_256"] == listing["DAWN_128"]


@needs_shapes
@pytest.mark.parametrize("name", ["LFG_128", "DAWN_128", "PBNet_pose", "PBNet_blink"])
def test_every_released_key_maps_and_loads_strictly(name, one_thread):
    entries = released(name)
    net, target = our_model(name)
    result = mapped(name, entries)
    assert not result.problems
    load_checked(target, result, name)
    listed = sum(len(state) for state in entries.values())
    if name.startswith("DAWN"):  # 900 U-Net keys, 48 never-used head cross-attentions dropped, 12 buffers
        assert listed == 912 and len(result.state) == 852
    if name.startswith("PBNet"):  # the two stored position tables are checked, not loaded
        assert len(result.state) == listed - 2


@needs_shapes
@pytest.mark.parametrize("broken", ["missing", "unexpected", "shape", "all"])
def test_bad_keys_are_one_error_that_lists_them_all_and_loads_nothing(broken):
    state = released("PBNet_pose")["model"]
    if broken in ("missing", "all"):
        del state["decoder.ztimelinear.weight"]
    if broken in ("unexpected", "all"):
        state["decoder.extra_head.weight"] = torch.zeros(3)
    if broken in ("shape", "all"):
        state["encoder.mu_layer.weight"] = torch.zeros(255, 384)
    net = PBNet(state_dim=6, **C.PBNET)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(StateDictMismatch) as error:
        load_checked(net, map_pbnet(state), "pose.pth.tar")
    message = str(error.value)
    expected = {
        "missing": "decoder.ztimelinear.weight",
        "unexpected": "decoder.extra_head.weight",
        "shape": "encoder.mu_layer.weight: (255, 384) in the file, (256, 384) expected",
    }
    for kind, line in expected.items():
        assert (line in message) == (broken in (kind, "all")), (kind, message)
    assert message.startswith("pose.pth.tar: does not fit") and "nothing was loaded" in message
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@needs_shapes
def test_derived_constants_are_checked():
    state = released("DAWN_128")["diffusion"]
    state["betas"] = state["betas"] * 1.01
    del state["posterior_variance"]
    problems = map_a2v(state).problems
    assert any(p.startswith("betas: differs from ours") for p in problems)
    assert "posterior_variance: missing schedule buffer" in problems
    pbnet = released("PBNet_blink")["model"]
    pbnet["encoder.sequence_pos_encoder.pe"] = pbnet["encoder.sequence_pos_encoder.pe"] + 0.01
    assert [p.split(":")[0] for p in map_pbnet(pbnet).problems] == ["encoder.sequence_pos_encoder.pe"]


@pytest.mark.skipif(not GOLDEN_PBNET.exists(), reason="reference golden vectors absent")
def test_position_table_is_the_reference_one():
    from safetensors.torch import load_file

    first16 = load_file(GOLDEN_PBNET)["const.encoder.sequence_pos_encoder.pe_first16"]
    torch.testing.assert_close(sinusoid_table(16, 64), first16, rtol=0, atol=1e-6)
    torch.testing.assert_close(reference_schedule_buffers()["betas"], NoiseSchedule("cosine").betas)


# -- files, pickles and the command line ---------------------------------------------------------------------
def test_pickled_objects_are_refused_unless_trusted(tmp_path):
    path = tmp_path / "checkpoint_1.pth.tar"
    torch.save({"model": {"w": torch.ones(2)}, "opt": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(PickledCheckpointError, match=r"argparse\.Namespace.*--trust-pickle"):
        read_checkpoint(path)
    assert torch.equal(read_checkpoint(path, trust_pickle=True)["model"]["w"], torch.ones(2))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")


@needs_shapes
def test_a_trusted_pickled_pbnet_converts(tmp_path):
    folder = tmp_path / "blink"
    folder.mkdir()
    torch.save({**released("PBNet_blink"), "opt": argparse.Namespace()}, folder / "checkpoint_95000.pth.tar")
    with pytest.raises(PickledCheckpointError):
        import_pbnet(folder, "blink")
    net, source = import_pbnet(folder, "blink", trust_pickle=True)
    assert net.config["state_dim"] == 2 and source.skipped == ["opt"]


def test_command_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="nothing to convert"):
        import_main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--a2v needs the stage-1 model"):
        import_main(["--a2v", str(tmp_path / "DAWN_128.pth"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="pass --size 128 or --size 256"):
        import_main(["--a2v", str(tmp_path / "a2v.pth"), "--lfg", str(tmp_path / "lfg.pth"), "--out", "x"])
    assert not list(tmp_path.iterdir())


@needs_shapes
def test_all_failing_inputs_are_reported_together(tmp_path):
    pose = released("PBNet_pose")
    del pose["model"]["decoder.init_proj.bias"]
    (tmp_path / "pose").mkdir()
    torch.save(pose, tmp_path / "pose" / "checkpoint_40000.pth.tar")
    torch.save(released("PBNet_pose"), tmp_path / "swapped.pth.tar")  # a pose model given as the blink one
    out = tmp_path / "out"
    args = ["--pbnet-pose", str(tmp_path / "pose"), "--pbnet-blink", str(tmp_path / "swapped.pth.tar")]
    with pytest.raises(SystemExit) as error:
        import_main([*args, "--out", str(out)])
    message = str(error.value)
    assert "2 inputs failed" in message and "decoder.init_proj.bias" in message
    assert "swapped.pth.tar: a PBNet of 6 outputs, but a blink model has 2" in message
    assert not out.exists()  # nothing written


def test_hubert_features_name_the_missing_setting():
    with pytest.raises(FileNotFoundError, match="audio_features.model_path=.*facebook/hubert-large-ls960-ft"):
        features_from_spec(C.HUBERT_FEATURES)


def test_make_sampler_passes_the_reference_alpha_offset():
    schedule = NoiseSchedule("cosine", 1000)
    assert make_sampler("ddim", schedule, reference_alpha_offset=True).reference_alpha_offset
    assert not make_sampler("ddim", schedule).reference_alpha_offset
    with pytest.raises(ValueError, match="DDIM setting"):
        make_sampler("dpm_solver", schedule, reference_alpha_offset=True)


# -- a full-size random released set, converted and generating -----------------------------------------------
@pytest.fixture(scope="module")
def released_set(tmp_path_factory):
    """The released files with full-size random weights, as the authors' folders hold them."""
    root = tmp_path_factory.mktemp("released")
    files = {
        "lfg": root / "LFG_128_1000ep.pth",
        "a2v": root / "DAWN_128.pth",
        "pose": root / "pbnet" / "pose" / "checkpoint_40000.pth.tar",
        "blink": root / "pbnet" / "blink" / "checkpoint_95000.pth.tar",
    }
    bookkeeping = {"lfg": {"optimizer": {}, "epoch": 999}, "a2v": {"optimizer_diff": {}}}
    for (key, path), (name, seed) in zip(
        files.items(), [("LFG_128", 1), ("DAWN_128", 2), ("PBNet_pose", 3), ("PBNet_blink", 4)], strict=True
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({**released(name, random=True, seed=seed), **bookkeeping.get(key, {})}, path)
        if key in ("pose", "blink"):
            (path.parent / "opt.yaml").write_text(OPT_YAML)
    return files


@pytest.fixture(scope="module")
def imported(released_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "dawn128"
    f = released_set
    import_main(
        ["--lfg", str(f["lfg"]), "--a2v", str(f["a2v"]), "--pbnet-pose", str(f["pose"].parent)]
        + ["--pbnet-blink", str(f["blink"].parent), "--out", str(out)]
    )
    return out, json.loads((out / "import.json").read_text())


@needs_shapes
def test_import_records_sources_and_the_reference_conventions(released_set, imported, one_thread):
    out, record = imported
    sources = {"motion": "lfg", "diffusion": "a2v", "pose": "pose", "blink": "blink"}
    for key, source in sources.items():
        entry = record["checkpoints"][key]
        assert entry["source"]["path"] == str(released_set[source].resolve())
        assert entry["source"]["sha256"] == file_sha256(released_set[source])
        assert entry["sha256"] == file_sha256(out / entry["file"])
    assert record["checkpoints"]["motion"]["source"]["skipped_entries"] == ["epoch", "optimizer"]
    assert record["checkpoints"]["pose"]["source"]["opt_sha256"] == file_sha256(
        released_set["pose"].parent / "opt.yaml"
    )
    assert record["conventions"]["frame_size"] == 128 and len(record["generate_overrides"]) == 4

    motion = load_motion_autoencoder(out / "stage1.ckpt")
    lfg = torch.load(released_set["lfg"], weights_only=True)
    torch.testing.assert_close(motion.generator.first.conv.weight, lfg["generator"]["first.conv.weight"])

    diffusion, stage3 = load_motion_diffusion(out / "stage3.ckpt")
    assert stage3["sampler"] == C.SAMPLER and stage3["sampler"]["reference_alpha_offset"]
    assert stage3["audio_features"] == C.HUBERT_FEATURES and stage3["frame_size"] == 128
    assert stage3["motion_ckpt_sha256"] == file_sha256(out / "stage1.ckpt")
    assert diffusion.config["target"] == "grid" and not diffusion.config["unet"]["learn_null_cond"]
    assert bool(diffusion.has_statistics) and bool(diffusion.has_motion_scale)
    for name in ("audio_std", "pose_scale", "blink_scale", "motion_scale"):
        assert torch.equal(getattr(diffusion, name), torch.ones_like(getattr(diffusion, name)))
    assert torch.equal(diffusion.audio_mean, torch.zeros(1024))
    a2v = torch.load(released_set["a2v"], weights_only=True)["diffusion"]
    torch.testing.assert_close(diffusion.unet.init_conv.weight, a2v["denoise_fn.init_conv.weight"])
    face = seeded_face_encoder(C.MOTION_DIFFUSION).state_dict()  # the same on every import
    assert all(torch.equal(face[k], v) for k, v in diffusion.face_encoder.state_dict().items())

    for signal, width, (mean, std) in (
        ("pose", 6, (C.POSE_MEAN, C.POSE_STD)),
        ("blink", 2, (C.BLINK_MEAN, C.BLINK_STD)),
    ):
        net, stage2 = load_pose_blink_generator(out / f"stage2_{signal}.ckpt")
        assert net.config["state_dim"] == width and stage2["signals"] == signal
        assert stage2["audio_features"] == C.HUBERT_FEATURES
        assert stage2["mean"].tolist() == list(mean) and stage2["std"].tolist() == list(std)
    assert C.POSE_STD == (180.0, 180.0, 180.0, 1.0, 720.0, 1080.0)


@needs_shapes
def test_pair_of_stage2_models_must_be_pose_then_blink_and_hubert_is_named(imported, one_thread):
    out, record = imported
    with pytest.raises(FileNotFoundError, match="HuBERT features .* set audio_features.model_path="):
        pipeline_module.DawnPipeline.from_config(compose("generate", record["generate_overrides"]))
    with pytest.raises(ValueError, match="a stage-2 model of 'blink', but checkpoints.pose needs"):
        load_pose_blink_pair(out / "stage2_blink.ckpt", out / "stage2_pose.ckpt")
    cfg = compose("generate", [f"checkpoints.pose={out / 'stage2_pose.ckpt'}"])
    with pytest.raises(ValueError, match="checkpoints.pose and checkpoints.blink go together"):
        pipeline_module.DawnPipeline.from_config(cfg)


class RandomHubert:
    """Stands in for HuBERT without `transformers`: random (T, 1024) features."""

    dim = 1024

    def __call__(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        return np.random.default_rng(0).standard_normal((num_frames, self.dim)).astype(np.float32)


@needs_shapes
def test_imported_set_generates_a_video_end_to_end(imported, tmp_path, monkeypatch, caplog, one_thread):
    out, record = imported
    try:  # a tiny random HuBERT as wide as HuBERT-large, in a folder named like the released model's
        hubert = [f"audio_features.model_path={tiny_hubert(tmp_path / 'hubert-large-ls960-ft', 1024)}"]
    except ImportError:
        hubert = []
        monkeypatch.setattr(pipeline_module, "features_from_spec", lambda *args: RandomHubert())
    samplers = []

    def recording_sampler_from_settings(*args, **kwargs):
        sampler = sampler_from_settings(*args, **kwargs)
        samplers.append(sampler)
        return sampler

    monkeypatch.setattr(pipeline_module, "sampler_from_settings", recording_sampler_from_settings)
    Image.fromarray(portrait((96, 80))).save(tmp_path / "face.png")
    write_wav(tmp_path / "speech.wav", speech(0.2)[0])  # 5 frames
    video = tmp_path / "talk.mp4"
    inputs = [f"portrait={tmp_path / 'face.png'}", f"speech={tmp_path / 'speech.wav'}", f"out={video}"]
    settings = [*record["generate_overrides"], *hubert, *inputs, "sampler.num_steps=2", "device=cpu"]
    settings.append("face.model_path=null")  # a synthetic portrait: no face backend even if DAWN_FACE_MODEL
    cfg = compose("generate", settings)
    with caplog.at_level(logging.WARNING, logger="dawn_lightning.pipeline"):
        generate(cfg)
    notices = [r.getMessage() for r in caplog.records if "face-region encoder" in r.getMessage()]
    assert len(notices) == 1 and "not from the DAWN release" in notices[0]
    (sampler,) = samplers
    assert sampler.reference_alpha_offset and sampler.eta == 1.0 and len(sampler.timesteps) == 2
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (5, 128, 128, 3)


def hub_cache(root: Path, repo: str, files: dict[str, Path], revision: str) -> None:
    """``files`` (name in the repository -> file) as huggingface_hub's cache holds a downloaded snapshot."""
    snapshot = root / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(source.resolve())
    (snapshot.parents[1] / "refs").mkdir(parents=True)
    (snapshot.parents[1] / "refs" / "main").write_text(revision)


@needs_shapes
def test_the_hub_release_becomes_a_bundle_offline(released_set, tmp_path, monkeypatch, one_thread):
    """`dawn-import-dawn --hub ... --bundle`: the released files and HuBERT read from a local hub cache with
    the network off, converted into a bundle (HuBERT inside) that generates a 128-px video."""
    pytest.importorskip("transformers", reason="HuBERT needs the hubert extra")
    from huggingface_hub import constants

    from dawn_lightning.pipeline import DawnPipeline

    f = released_set
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    args = ["--hub", "Hanbo-Cheng/DAWN", "--resolution", "128", "--bundle", str(tmp_path / "bundle")]
    with pytest.raises(SystemExit, match="Hanbo-Cheng/DAWN: not in the local hub cache"):
        import_main(args)
    released = {"LFG_128_1000ep.pth": f["lfg"], "DAWN_128.pth": f["a2v"]}
    for signal in ("pose", "blink"):
        released |= {f"pbnet/{signal}/{p.name}": p for p in f[signal].parent.iterdir()}
    hub_cache(tmp_path / "hub", "Hanbo-Cheng/DAWN", released, "1" * 40)
    hubert = tiny_hubert(tmp_path / "hubert-download", 1024)
    hub_cache(
        tmp_path / "hub", "facebook/hubert-large-ls960-ft", {p.name: p for p in hubert.iterdir()}, "2" * 40
    )

    import_main(args)
    bundle = tmp_path / "bundle"
    assert (bundle / "hubert-large-ls960-ft" / "config.json").is_file()
    assert {p.name for p in bundle.glob("*.safetensors")} == {
        "motion.safetensors",
        "pose.safetensors",
        "blink.safetensors",
        "audio_to_motion.safetensors",
    }
    assert not [p for p in bundle.rglob("*") if p.suffix in (".pth", ".tar", ".ckpt", ".bin")]  # no pickles
    pipeline = DawnPipeline.from_pretrained(bundle, sampler={"num_steps": 1})
    video = pipeline(portrait((96, 80)), speech(0.2)[0], seed=0)
    assert video.frames.shape == (5, 128, 128, 3)
