"""Stage-1 benchmark: training speed, decode throughput (batched vs frame by frame) and reconstruction quality
against the trivial baseline of copying the source frame."""

from __future__ import annotations

import functools

import torch
from omegaconf import OmegaConf
from torchmetrics.functional.image import peak_signal_noise_ratio

from dawn_lightning.benchmarks.timing import median_seconds
from dawn_lightning.checkpoints import load_motion_autoencoder
from dawn_lightning.config import compose
from dawn_lightning.data.datasets import FramePairDataset
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.stages.motion import MotionAutoencoderModule


def model_config(name: str) -> dict:
    """The ``net`` arguments of ``conf/model/<name>.yaml``, as a training run composes them."""
    net = OmegaConf.to_container(compose("train", [f"model={name}"]).model.net)
    net.pop("_target_")
    return net


def training_speed(model: str = "motion_64", size: int = 64, batch: int = 16, steps: int = 5) -> dict:
    """Optimiser steps per second of the full stage-1 loss on random frames (data loading excluded)."""
    torch.manual_seed(0)
    module = MotionAutoencoderModule(
        MotionAutoencoder(**model_config(model)),
        functools.partial(torch.optim.Adam, lr=1e-4),
        perceptual_scales=(1.0, 0.5, 0.25),
    )
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-4)
    batch_data = {"source": torch.rand(batch, 3, size, size), "driving": torch.rand(batch, 3, size, size)}

    def step():
        loss = module.losses(batch_data)[0]["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds = median_seconds(step, repeats=steps)
    return {
        "model": model,
        "size": size,
        "batch": batch,
        "steps_per_s": 1 / seconds,
        "samples_per_s": batch / seconds,
    }


@torch.no_grad()
def decode_throughput(model: str, size: int, frames: int = 40, batch_sizes=(1, 8, 40)) -> dict:
    """Milliseconds per decoded frame from one portrait: the reference's loop (re-encoding the source for
    every frame), a loop over frames with the source encoded once, and batched decoding."""
    net = MotionAutoencoder(**model_config(model)).eval()
    source = torch.rand(1, 3, size, size)
    h = round(size * net.config["scale_factor"])
    grid = torch.rand(frames, h, h, 2) * 2 - 1
    occlusion = torch.rand(frames, 1, h, h)
    encoding = net.encode(source)
    result = {"model": model, "size": size, "frames": frames}
    result["loop_reencode_ms"] = (
        1000
        * median_seconds(
            lambda: [net.decode(source, grid[i : i + 1], occlusion[i : i + 1]) for i in range(frames)], 3
        )
        / frames
    )
    for batch in batch_sizes:
        result[f"batch{batch}_ms"] = (
            1000
            * median_seconds(lambda b=batch: net.decode(encoding, grid, occlusion, batch_size=b), 3)
            / frames
        )
    return result


@torch.no_grad()
def reconstruction_quality(
    checkpoint: str, store_dir: str, split: str = "test", pairs_per_clip: int = 16
) -> dict:
    """Mean PSNR (dB) of the reconstruction and of copying the source, over fixed random pairs of ``split``;
    also on the mouth box, where speech moves the face most."""
    net = load_motion_autoencoder(checkpoint)
    dataset = FramePairDataset(store_dir, split, train=False, samples_per_clip=pairs_per_clip)
    scores = {"model": [], "copy": []}
    for start in range(0, len(dataset), 32):
        items = [dataset[i] for i in range(start, min(start + 32, len(dataset)))]
        source = torch.stack([x["source"] for x in items])
        driving = torch.stack([x["driving"] for x in items])
        prediction = net(source, driving)["prediction"].clamp(0, 1)
        for name, image in (("model", prediction), ("copy", source)):
            scores[name].append(
                peak_signal_noise_ratio(image, driving, data_range=1.0, reduction="none", dim=(1, 2, 3))
            )
    return {
        "split": split,
        "pairs": len(dataset),
        **{f"psnr_{k}": float(torch.cat(v).mean()) for k, v in scores.items()},
    }
