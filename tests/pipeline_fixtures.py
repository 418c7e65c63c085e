"""Tiny stage checkpoints with random weights for the inference pipeline's tests (plumbing, not quality).

`tiny_checkpoints(root)` writes one checkpoint per stage in the formats the stage loaders read, once per
test session; tests also get helpers to write speech and portraits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image

from dawn_lightning.checkpoints import AUDIO_TO_MOTION, MOTION, POSE_BLINK, file_sha256, net_state, save
from dawn_lightning.config import compose
from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.models.audio_to_motion.motion_diffusion import MotionDiffusion
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.pose_blink.pbnet import PBNet

FRAME_SIZE = 64
SMALL_MOTION = {"block_expansion": 8, "max_features": 32, "num_blocks": 3}
UNET = {
    "dim": 8,
    "dim_mults": [1, 2],
    "attn_heads": 2,
    "attn_dim_head": 8,
    "spatial_dim_head": 8,
    "cross_heads": 2,
    "resnet_groups": 4,
    "window": 8,
}
_BUILT: dict[str, dict[str, Path]] = {}


def _perturb(net: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Adds noise to every parameter, so that no zero-initialised layer hides a condition's effect."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))


def write_stage1(path: Path) -> MotionAutoencoder:
    torch.manual_seed(0)
    net = MotionAutoencoder(
        num_regions=4,
        region=SMALL_MOTION,
        background=SMALL_MOTION,
        flow=SMALL_MOTION,
        generator={"block_expansion": 8, "max_features": 32, "num_bottleneck_blocks": 1},
    ).eval()
    save(path, MOTION, {"config": net.config}, net_state(net))
    return net


def write_stage2(path: Path, spec: dict | None = None, signals: str = "both") -> None:
    torch.manual_seed(1)
    spec = spec or LogMelFeatures().spec
    width = {"both": 8, "pose": 6, "blink": 2}[signals]
    net = PBNet(
        state_dim=width,
        audio_dim=spec["dim"],
        pose_latent_dim=8,
        audio_latent_dim=16,
        ff_size=16,
        num_layers=1,
        num_heads=2,
        dropout=0.0,
        num_buckets=8,
        max_distance=16,
        window=50,
    )
    _perturb(net, 1)
    state = net_state(net)
    # units like a store's: pose around (2, -1, 0, 1, 0, 0) degrees/scale/shift, blinks around 0.3
    state["state_mean"] = torch.tensor([2.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.3])[:width]
    state["state_std"] = torch.tensor([5.0, 4.0, 3.0, 0.05, 0.02, 0.02, 0.2, 0.2])[:width]
    record = {"class": "PBNet", "config": net.config, "signals": signals, "audio_features": spec}
    save(path, POSE_BLINK, record, state)


def write_stage3(
    path: Path, motion_path: Path, z_channels: int, spec: dict | None = None, objective: str = "diffusion"
) -> None:
    torch.manual_seed(2)
    spec = spec or LogMelFeatures().spec
    net = MotionDiffusion(audio_dim=spec["dim"], z_channels=z_channels, unet=UNET, objective=objective)
    _perturb(net, 2)
    audio, pose, blink = torch.randn(100, spec["dim"]) - 5, torch.randn(100, 6) * 3, torch.rand(100, 2)
    net.set_statistics(audio.mean(0), audio.std(0), pose.std(0), blink.std(0))
    record = {
        "config": net.config,
        "motion_ckpt": str(motion_path),
        "motion_ckpt_sha256": file_sha256(motion_path),
        "sampler": {
            "name": "flow_euler" if objective == "flow" else "ddim",
            "num_steps": 2,
            "eta": 1.0,
            "dynamic_threshold": None,
        },
        "audio_features": spec,
        "frame_size": FRAME_SIZE,
        "mean_face_box": [0.2, 0.2, 0.8, 0.8],
    }
    save(path, AUDIO_TO_MOTION, record, net_state(net))


def tiny_checkpoints(root: Path) -> dict[str, Path]:
    """{"motion", "pose_blink", "diffusion", "pose_blink_40mels"} checkpoint paths under ``root``, written
    once per session (the last one's audio features differ from stage 3's)."""
    if "paths" not in _BUILT:
        root.mkdir(parents=True, exist_ok=True)
        paths = {k: root / f"{k}.ckpt" for k in ("motion", "pose_blink", "diffusion", "pose_blink_40mels")}
        motion = write_stage1(paths["motion"])
        write_stage2(paths["pose_blink"])
        write_stage2(paths["pose_blink_40mels"], LogMelFeatures(n_mels=40).spec)
        write_stage3(paths["diffusion"], paths["motion"], motion.z_channels)
        _BUILT["paths"] = paths
    return _BUILT["paths"]


def generate_config(checkpoints: dict[str, Path], *extra: str, **overrides):
    """``conf/generate.yaml`` on the tiny checkpoints, 2 sampling steps on the CPU, then ``extra`` overrides
    and ``key=value`` ones."""
    args = [
        f"checkpoints.motion={checkpoints['motion']}",
        f"checkpoints.pose_blink={checkpoints['pose_blink']}",
        f"checkpoints.diffusion={checkpoints['diffusion']}",
        "sampler.num_steps=2",
        "device=cpu",
        *extra,
        *(f"{k}={v}" for k, v in overrides.items()),
    ]
    return compose("generate", args)


def tiny_hubert(folder: Path, hidden_size: int = 16) -> Path:
    """A randomly initialised HuBERT of ``hidden_size`` features, saved where `HubertFeatures` reads it (needs
    `transformers`, the `hubert` extra). One layer, tiny convolutions: ~5 M parameters at 1024 wide."""
    import transformers

    if not (folder / "config.json").is_file():
        torch.manual_seed(3)
        config = transformers.HubertConfig(
            hidden_size=hidden_size,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=(8,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2 if hidden_size < 64 else 16,
        )
        transformers.HubertModel(config).save_pretrained(folder)
    return folder


def speech(seconds: float, rate: int = 16_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Speech-like test audio (channels, N) float32: a pitched buzz under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2 / 4
    buzz = np.sign(np.sin(2 * np.pi * 120 * t)) * 0.3 + 0.05 * rng.standard_normal(len(t))
    mono = (envelope * buzz).astype(np.float32)
    return np.stack([mono * (0.8 + 0.2 * c) for c in range(channels)])


def write_wav(path: Path, audio: np.ndarray, rate: int = 16_000) -> Path:
    """(channels, N) or (N,) float audio -> a 16-bit PCM wav."""
    import soundfile

    audio = np.atleast_2d(audio)
    soundfile.write(str(path), audio.T, rate, subtype="PCM_16")
    return path


def portrait(size: tuple[int, int] = (80, 80), channels: int = 3, seed: int = 0) -> np.ndarray:
    """A uint8 (H, W, C) test image: a skin-toned ellipse with dark eyes and a mouth on a coloured ground."""
    h, w = size
    y, x = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), np.float32) + rng.uniform(0.2, 0.6, 3)
    face = ((x - 0.5) / 0.3) ** 2 + ((y - 0.5) / 0.38) ** 2 < 1
    image[face] = (0.9, 0.7, 0.6)
    for cx in (0.4, 0.6):
        image[((x - cx) / 0.04) ** 2 + ((y - 0.42) / 0.03) ** 2 < 1] = 0.1
    image[(np.abs(x - 0.5) < 0.1) & (np.abs(y - 0.68) < 0.02)] = (0.5, 0.1, 0.1)
    out = (image * 255).astype(np.uint8)
    if channels == 4:
        alpha = np.where(face, 255, 0).astype(np.uint8)[..., None]
        out = np.concatenate([out, alpha], axis=-1)
    return out


def bad_audio(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A bad speech input of ``kind`` (one of BAD_AUDIO) under ``tmp_path`` and a phrase its error holds."""
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return path, "no such audio file"
    if kind == "not_audio":
        path.write_text("this is a text file, not a wav\n" * 20)
        return path, "cannot decode audio"
    if kind == "empty":
        soundfile.write(str(path), np.zeros(0, np.float32), 16_000)
        return path, "empty"
    if kind == "silent":
        write_wav(path, np.zeros(16_000, np.float32))
        return path, "silent"
    if kind == "too_short":
        write_wav(path, speech(0.02)[0])
        return path, "shorter than one video frame"
    if kind == "image":
        Image.fromarray(portrait()).save(path.with_suffix(".png"))
        return path.with_suffix(".png"), "no audio stream"
    raise AssertionError(kind)


BAD_AUDIO = ["missing", "not_audio", "empty", "silent", "too_short", "image"]
