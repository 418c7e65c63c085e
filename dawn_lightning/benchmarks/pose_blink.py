"""Stage-2 benchmark: long generation in one pass (speed, drift) and generated vs true tracks on a split."""

from __future__ import annotations

import time

import torch

from dawn_lightning.checkpoints import load_pose_blink_generator
from dawn_lightning.data.datasets import SignalWindowDataset
from dawn_lightning.data.store import ClipStore
from dawn_lightning.stages.pose_blink import SIGNALS, compare_tracks


@torch.no_grad()
def long_generation(checkpoint: str, store_dir: str, window: int = 100, factor: int = 10) -> dict:
    """Generate ``factor`` x ``window`` frames at once from the test clips' audio tiled to that length; the
    pose std (degrees, yaw/pitch/roll) of the first and the last window shows drift or collapse."""
    net, norm = load_pose_blink_generator(checkpoint)
    store = ClipStore(store_dir)
    info = store.split("test")[0]
    signals = store.reader(info).signals
    audio = torch.from_numpy(signals["audio_features"])
    length = window * factor
    audio = audio.repeat(length // len(audio) + 1, 1)[:length][None]
    init = torch.cat([torch.from_numpy(signals[k][0]) for k in SIGNALS[norm["signals"]]])[None]
    start = time.perf_counter()
    states = net.generate(audio, (init - norm["mean"]) / norm["std"], seed=0) * norm["std"] + norm["mean"]
    seconds = time.perf_counter() - start
    pose = states[0, :, :3]
    return {
        "frames": length,
        "seconds": seconds,
        "finite": bool(torch.isfinite(states).all()),
        "pose_std_first_window": float(pose[:window].std(0).mean()),
        "pose_std_last_window": float(pose[-window:].std(0).mean()),
    }


@torch.no_grad()
def track_quality(
    checkpoint: str, store_dir: str, split: str = "test", window: int = 100, samples: int = 4
) -> dict:
    """`compare_tracks` over every window of ``split``, generated ``samples`` times (seeds) from each window's
    audio and first frame: a test split holds a few dozen seconds, so one draw leaves the blink rate to
    chance (the first draw of window i uses seed i, as with ``samples=1``)."""
    net, norm = load_pose_blink_generator(checkpoint)
    dataset = SignalWindowDataset(store_dir, split, train=False, window=window)
    records = []
    for index in range(len(dataset)):
        item = dataset[index]
        raw = torch.cat([item[k] for k in SIGNALS[norm["signals"]]], dim=-1)[None]
        x = (raw - norm["mean"]) / norm["std"]
        mask = item["mask"][None]
        for draw in range(samples):
            seed = index + draw * len(dataset)
            generated = net.generate(item["audio"][None], x[:, 0], seed=seed, mask=mask)
            records.append(
                {
                    "generated": generated * norm["std"] + norm["mean"],
                    "truth": raw,
                    "mask": mask,
                    "audio": item["audio"][None],
                }
            )
    metrics = compare_tracks(records, norm["signals"])
    return {"split": split, "windows": len(dataset), "samples": samples, **metrics}
