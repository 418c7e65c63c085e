"""The metric states reduce across processes: 2 CPU ranks (gloo) with uneven shards give the single-process
values (sum states for the Frechet distances, "cat" list states for per-video LSE and means)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dawn_lightning.metrics.frechet import FrechetFeatureDistance
from dawn_lightning.metrics.lse import LipSyncError
from dawn_lightning.metrics.video_mean import VideoMean

SHARDS = [slice(0, 70), slice(70, 200)]  # uneven: 70 and 130 samples
VIDEOS = [slice(0, 2), slice(2, 7)]  # 2 and 5 videos


def data():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((200, 5)), rng.standard_normal((200, 5)) * 1.3 + 0.2
    scores = rng.uniform(0, 5, (7, 3))  # offset, distance, confidence per video
    return torch.from_numpy(real), torch.from_numpy(fake), scores


def compute(shard: slice, videos: slice) -> dict:
    real, fake, scores = data()
    frechet = FrechetFeatureDistance(torch.nn.Identity(), 5)
    frechet.update(real[shard], real=True, features=True)
    frechet.update(fake[shard], real=False, features=True)
    lse, mean = LipSyncError(torch.nn.Identity()), VideoMean()
    for offset, distance, confidence in scores[videos]:
        lse.update(scores=(int(offset), float(distance), float(confidence)))
        mean.update(float(distance))
    return {
        "frechet": float(frechet.compute()),
        **{k: float(v) for k, v in lse.compute().items()},
        "mean": float(mean.compute()),
    }


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = compute(SHARDS[rank], VIDEOS[rank])
        with open(f"{out}.{rank}", "w") as file:
            json.dump(result, file)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_states_reduce_across_two_processes_with_uneven_data(tmp_path):
    expected = compute(slice(0, 200), slice(0, 7))
    out = str(tmp_path / "result")
    mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
    for rank in range(2):
        with open(f"{out}.{rank}") as file:
            got = json.load(file)
        assert got == pytest.approx(expected, rel=1e-9)
