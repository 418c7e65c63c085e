"""Sweeps: the ablation configs compose into Hydra sweeps, a multirun of two tiny runs gives a report with
both rows, and every run records its metrics, speed and monitoring scalars."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from dawn_lightning.config import CONF_DIR
from dawn_lightning.report import tensorboard_scalars, write_report
from tests.test_resume import stage2_command

SWEEPS = {
    "window": ("AudioToMotionModule", {"model.net.unet.window": "20,40,80,200"}),
    "curriculum": ("AudioToMotionModule", {"model.init_from": None}),
    "lip_weight": ("AudioToMotionModule", {"model.lip_weight": "0.0,0.5,1.0,2.0"}),
    "pose_generator": ("PoseBlinkModule", {"model": "pbnet_cpu,pose_diffusion"}),
}


SAMPLING_SWEEPS = {
    "sampler": {"sampler.name": "flow_euler,flow_heun", "sampler.num_steps": "1,2,4,8"},
    "guidance": {"sampler.guidance_scale": "1.0,1.5,2.0"},
}


def sweep_config(name: str, config: str = "train"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config, [f"+sweep={name}"], return_hydra_config=True)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_ablation_sweeps_compose(name):
    module, params = SWEEPS[name]
    cfg = sweep_config(name)
    assert cfg.model._target_.endswith(module) and cfg.task_name == f"sweep_{name}"
    for key, values in params.items():
        assert values is None or cfg.hydra.sweeper.params[key] == values
    assert f"/sweeps/{name}/" in cfg.hydra.sweep.dir


@pytest.mark.parametrize("name", sorted(SAMPLING_SWEEPS))
def test_sampling_sweeps_re_sample_a_trained_run(name):
    """Sampler and guidance sweeps are evaluation sweeps over the trained checkpoints: no training."""
    cfg = sweep_config(name, "evaluate")
    assert cfg.task_name == f"sweep_{name}" and "model" not in cfg
    assert dict(cfg.hydra.sweeper.params) == SAMPLING_SWEEPS[name]
    assert f"/evaluation/sweeps/sweep_{name}/" in cfg.hydra.sweep.dir


@pytest.mark.slow
def test_an_evaluation_sweep_over_one_checkpoint_gives_a_row_per_setting(synthetic, checkpoints, tmp_path):
    """dawn-evaluate -m over two guidance scales of the same checkpoints: two job folders, and a report row
    each with LSE, the lip-sync proxy, the network passes and the seconds per output second."""
    from dawn_lightning.checkpoints import SYNCNET, net_state, save
    from dawn_lightning.models.syncnet import CompactSyncNet

    net = CompactSyncNet(dim=8, width=4, crop_size=16)
    save(tmp_path / "syncnet.ckpt", SYNCNET, {"config": net.config}, net_state(net))
    sweep = tmp_path / "sweep"
    command = [
        str(Path(sys.executable).with_name("dawn-evaluate")),
        "-m",
        f"data.store_dir={synthetic.root}",
        *(f"checkpoints.{k}={checkpoints[k]}" for k in ("motion", "pose_blink", "diffusion")),
        f"metrics.lse.weights={tmp_path / 'syncnet.ckpt'}",
        "metrics.fid.random_dim=8",
        "metrics.fvd.random_dim=4",
        "metrics.fvd.clip_lengths=[16]",
        "max_clips=2",
        "save_videos=false",
        "device=cpu",
        "sampler.num_steps=2",
        "sampler.guidance_scale=1.0,2.0",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DAWN_FACE_MODEL": ""}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    paths = write_report(sweep)
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["sampler.guidance_scale"], r["passes"]) for r in rows] == [("1.0", "2"), ("2.0", "4")]
    for row in rows:
        assert row["status"] == "finished" and row["test/lse_c_generated"] and row["test/lip_proxy_generated"]
        assert float(row["test/seconds_per_output_second"]) > 0
    assert paths["png"].stat().st_size > 0


def test_optuna_sweep_optimises_the_returned_metric():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = sweep_config("optuna")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "minimize"
    assert cfg.optimized_metric == "val/pose_l1" and "model.optimizer.lr" in cfg.hydra.sweeper.params


@pytest.mark.slow
def test_a_sweep_of_two_runs_gives_a_report_with_both(synthetic, tmp_path):
    sweep = tmp_path / "sweep"
    settings = {"trainer.max_epochs": "2", "trainer.log_every_n_steps": "1", "model.net.width": "16,32"}
    train, *overrides = stage2_command(synthetic.root, **settings)
    command = [train, "-m", *overrides, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DAWN_ROOT": str(tmp_path)}
    subprocess.run(command, env=env, check=True, capture_output=True)
    paths = write_report(sweep)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["model.net.width"] for r in rows] == ["16", "32"] and {r["status"] for r in rows} == {
        "finished"
    }
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert (
        header[:3] == ["run", "model.net.width", "status"] and header[3] == "val/pose_l1"
    )  # the optimised one
    for row in rows:
        assert (
            float(row["val/pose_l1"]) > 0 and float(row["train/samples_per_sec"]) > 0 and row["steps"] == "8"
        )
    markdown = paths["md"].read_text()
    assert markdown.count("| 0 | 16 | finished |") == 1 and "| 1 | 32 | finished |" in markdown
    assert paths["png"].stat().st_size > 1000
    # monitoring: TensorBoard has the learning rate, gradient norm, speed, memory and the config as text
    scalars = tensorboard_scalars(sweep / "0")
    for tag in (
        "lr-AdamW",
        "train/grad_norm",
        "train/samples_per_sec",
        "memory/rss_gib",
        "memory/peak_rss_gib",
    ):
        assert tag in scalars and scalars[tag] > 0, tag
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(sweep / "0" / "tensorboard"))
    events.Reload()
    assert any("config" in tag for tag in events.Tags()["tensors"])
    # dawn-report is the command-line face of the same
    out = subprocess.run(
        [str(Path(sys.executable).with_name("dawn-report")), str(sweep), "--out", str(tmp_path / "r")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "| 1 | 32 | finished |" in out and (tmp_path / "r" / "report.png").is_file()


def test_slurm_launcher_takes_its_sizes_from_the_trainer():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
        cfg = hydra_compose("train", overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.max_num_timeout > 0
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
