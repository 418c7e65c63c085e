"""`dawn-bench gpu` (`make bench-gpu`) at the tiny profile on the CPU: its random batches look like the data
modules' samples, a stage trains through the Lightning Trainer, and the report holds what it measured."""

import torch

from dawn_lightning.benchmarks import gpu
from dawn_lightning.data.datasets import FramePairDataset, SignalWindowDataset, VideoClipDataset


def signature(item: dict) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in item.items()}


def test_random_items_have_the_datasets_keys_shapes_and_dtypes(synthetic):
    generator = torch.Generator().manual_seed(0)
    real = {
        "stage1": FramePairDataset(synthetic.root, "train", train=True)[0],
        "stage2": SignalWindowDataset(synthetic.root, "train", train=True, window=30)[0],
        "stage3": VideoClipDataset(synthetic.root, "train", train=True, num_frames=12)[0],
    }
    frames = {"stage1": 1, "stage2": 30, "stage3": 12}
    for stage, item in real.items():
        audio_dim = real["stage2"]["audio"].shape[1]
        fake = gpu.random_item(stage, 64, audio_dim, frames[stage], generator)
        assert signature(fake) == signature(item), stage


def test_a_stage_trains_and_reports_its_speed_and_memory():
    row = gpu.train_stage("stage2", "tiny", torch.device("cpu"), "32-true", steps=2)
    assert row["steps"] == 2 and row["batch"] == 2 and row["frames"] == 40
    assert row["samples_per_s"] > 0 and row["parameters"] > 0 and "peak_mib" in row


def test_a_failing_part_is_recorded_and_the_rest_still_runs(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(gpu, "attention_check", broken)
    results = gpu.gpu_benchmark(
        device="cpu",
        profile="tiny",
        precision="fp32",
        stages=("stage2",),
        samplers=(),
        steps=1,
        log=lambda _: None,
    )
    assert "out of memory" in results["errors"]["attention"]
    assert [row["stage"] for row in results["training"]] == ["stage2"]
    assert "attention FAILED" in gpu.markdown(results) and "| stage2 |" in gpu.markdown(results)
