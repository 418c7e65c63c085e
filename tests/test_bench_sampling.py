"""`dawn-bench sampling`: a row per sampler setting with its passes, speed and scores, from a diffusion and
a flow-matching stage 3 (tiny random networks: the table's plumbing, not its figures)."""

from __future__ import annotations

import pytest

from dawn_lightning.benchmarks.sampling import markdown, sampling_benchmark
from dawn_lightning.checkpoints import AUDIO_TO_MOTION, SYNCNET, net_state, read, save
from dawn_lightning.models.syncnet import CompactSyncNet
from tests.pipeline_fixtures import tiny_checkpoints, write_stage3


@pytest.mark.slow
def test_a_row_per_setting_from_both_objectives(synthetic, tmp_path):
    paths = tiny_checkpoints(tmp_path / "ckpts")
    z_channels = read(paths["diffusion"], AUDIO_TO_MOTION).record["config"]["z_channels"]
    write_stage3(tmp_path / "flow.ckpt", paths["motion"], z_channels, objective="flow")
    net = CompactSyncNet(dim=8, width=4, crop_size=16)
    save(tmp_path / "syncnet.ckpt", SYNCNET, {"config": net.config}, net_state(net))
    extra = [
        f"checkpoints.motion={paths['motion']}",
        f"checkpoints.pose_blink={paths['pose_blink']}",
        f"metrics.lse.weights={tmp_path / 'syncnet.ckpt'}",
        "metrics.fid.random_dim=8",
        "metrics.fvd.random_dim=4",
        "metrics.fvd.clip_lengths=[16]",
        "device=cpu",
    ]
    results = sampling_benchmark(
        {"diffusion": str(paths["diffusion"]), "flow": str(tmp_path / "flow.ckpt")},
        str(tmp_path),
        str(synthetic.root),
        max_clips=1,
        threads=1,
        only=["DDIM 5", "flow, Heun 4"],
        extra=extra,
    )
    rows = {row["setting"]: row for row in results["rows"]}
    assert rows.keys() == {"DDIM 5", "flow, Heun 4"}
    assert rows["DDIM 5"]["passes"] == 10 and rows["flow, Heun 4"]["passes"] == 16  # guided: twice
    for row in rows.values():
        assert row["s_per_s"] > 0 and row["lse_c"] is not None and row["frame_change"] >= 0
    assert results["truth"]["frame_change"] > 0 and "| flow, Heun 4 | 16 |" in markdown(results)
