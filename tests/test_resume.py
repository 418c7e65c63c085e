"""Resuming: a killed run, re-run with the same command, continues its folder from its last checkpoint with
the optimiser, scheduler, EMA, step counter and random states, and ends with the weights of an uninterrupted
run; checkpoints are written atomically, so a kill never leaves a broken last.ckpt."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from dawn_lightning.resume import CLAIM, FINISHED, find_resumable_run
from dawn_lightning.training.checkpoint_io import AtomicCheckpointIO

DAWN_TRAIN = Path(sys.executable).with_name("dawn-train")


def fake_run(root: Path, name: str, overrides: list[str], checkpoint: bool, finished: bool = False) -> Path:
    """A run folder started at minute:second ``name`` of a fixed hour."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    started = 1.7e9 + sum(
        int(part) * 60**i for i, part in enumerate(reversed(name.split("_")[-1].split("-")))
    )
    os.utime(run / ".hydra" / "overrides.yaml", (started, started))
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    if finished:
        (run / FINISHED).touch()
    return run


def test_finds_the_newest_unfinished_run_of_the_same_command(tmp_path):
    tmp_path = tmp_path.resolve()
    same, other = ["experiment=stage2", "trainer.max_epochs=3"], ["experiment=stage2"]
    old = fake_run(tmp_path, "2026-01-01_00-00-00", same, checkpoint=True)
    fake_run(tmp_path, "2026-01-01_00-00-05", other, checkpoint=True)  # another command
    fake_run(tmp_path, "2026-01-01_00-00-09", same, checkpoint=False)  # killed before its first checkpoint
    current = fake_run(tmp_path, "2026-01-01_00-01-00", [*same, "resume=true"], checkpoint=False)
    assert find_resumable_run(current, [*same, "resume=true"]) == (old, old / "checkpoints" / "last.ckpt")
    assert find_resumable_run(current, other[::-1] + ["trainer.max_epochs=4"]) is None
    newer = fake_run(tmp_path, "2026-01-01_00-00-30", same, checkpoint=True, finished=True)
    assert find_resumable_run(current, same) is None  # the newest run of the command finished: start afresh
    (newer / FINISHED).unlink()
    assert find_resumable_run(current, same)[0] == newer
    # a run still training (claimed by a live process) is left alone; a dead process's claim is stale
    trainer = subprocess.Popen(["sleep", "60"])
    (newer / CLAIM).write_text(f"{socket.gethostname()} {trainer.pid}")
    assert find_resumable_run(current, same) is None
    trainer.kill()
    trainer.wait()
    assert find_resumable_run(current, same)[0] == newer
    (current / "hpc_ckpt_1.ckpt").write_bytes(b"x")  # a requeued SLURM job keeps its folder
    assert find_resumable_run(current, same) == (current, current / "hpc_ckpt_1.ckpt")
    # a sweep job re-run in a new sweep folder finds its own earlier job among the earlier sweeps' jobs
    sweeps = tmp_path / "sweeps"
    job = fake_run(sweeps / "2026-01-01_00-00-00", "0", [*same, "model.lr=1"], checkpoint=True)
    fake_run(sweeps / "2026-01-01_00-00-00", "1", [*same, "model.lr=2"], checkpoint=True)
    rerun = fake_run(sweeps / "2026-01-02_00-00-00", "0", [*same, "model.lr=1"], checkpoint=False)
    assert find_resumable_run(rerun, [*same, "model.lr=1"])[0] == job


def test_a_kill_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A process saving a 16 MB checkpoint in a loop is SIGKILLed at arbitrary moments: the file on disk
    always loads, as one of the complete checkpoints; the next save clears the killed one's partial file."""
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent(
        f"""
        import torch
        from dawn_lightning.training.checkpoint_io import AtomicCheckpointIO
        io, base = AtomicCheckpointIO(), torch.arange(4 << 20, dtype=torch.float32)
        for step in range(10**6):
            io.save_checkpoint({{"step": step, "w": base + step}}, {str(path)!r})
            print(step, flush=True)
        """
    )
    for delay in (0.13, 0.37):
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # one save done: the next ones replace it
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        checkpoint = torch.load(path, weights_only=True)
        expected = torch.arange(4 << 20, dtype=torch.float32) + checkpoint["step"]
        assert checkpoint["step"] >= 0 and torch.equal(checkpoint["w"], expected)
    AtomicCheckpointIO().save_checkpoint({"step": -1}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def stage2_command(store: Path, **settings: str) -> list[str]:
    """`dawn-train` of a tiny stage-2 run (EMA on, as experiment=stage2 has it): 4 epochs of 4 batches, unless
    ``settings`` (override key -> value) say otherwise."""
    overrides = {
        "experiment": "stage2",
        "data.store_dir": str(store),
        "trainer.max_epochs": "4",
        "trainer.limit_train_batches": "4",
        "trainer.limit_val_batches": "1",
        "trainer.check_val_every_n_epoch": "2",
        "+trainer.enable_progress_bar": "false",
        "datamodule.window": "40",
        "datamodule.batch_size": "4",
        "model.net.width": "32",
        "model.net.num_layers": "1",
        "model.net.ff_size": "64",
        "model.net.sampling_steps": "2",
        "logger": "many",
    } | settings
    return [str(DAWN_TRAIN), *(f"{k}={v}" for k, v in overrides.items()), "~callbacks.rich_progress_bar"]


def final_weights(root: Path) -> dict:
    return torch.load(
        root / "experiments" / "stage2" / "latest" / "checkpoints" / "last.ckpt", weights_only=True
    )


def test_a_run_shorter_than_its_validation_period_ends_with_a_checkpoint(synthetic, tmp_path):
    """1 epoch with validation every 2: no epoch validates, yet the run leaves last.ckpt and `latest`."""
    command = stage2_command(synthetic.root, **{"trainer.max_epochs": "1"})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DAWN_ROOT": str(tmp_path)}
    subprocess.run(command, env=env, check=True, capture_output=True)
    assert final_weights(tmp_path)["global_step"] == 4
    assert (tmp_path / "experiments" / "stage2" / "latest" / FINISHED).exists()


# last.ckpt at the end of every epoch (the default), or every 3 of the epochs' 4 steps, so that
# the kill comes after a checkpoint written in the middle of an epoch: the re-run must draw that epoch's rest
MID_EPOCH = {
    "callbacks.last_checkpoint.every_n_epochs": "null",
    "+callbacks.last_checkpoint.every_n_train_steps": "3",
    "datamodule.num_workers": "2",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("checkpoints", "packed"),
    [({}, False), (MID_EPOCH, False), (MID_EPOCH, True)],
    ids=["epoch-end", "mid-epoch", "mid-epoch-packed-store"],
)
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(
    synthetic, synthetic_pack, tmp_path, checkpoints, packed
):
    command = stage2_command(synthetic_pack if packed else synthetic.root, **checkpoints)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(command, env={**env, "DAWN_ROOT": str(straight)}, check=True, capture_output=True)

    killed = tmp_path / "killed"
    runs = killed / "experiments" / "stage2" / "runs"
    process = subprocess.Popen(
        command, env={**env, "DAWN_ROOT": str(killed)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not list(runs.glob("*/checkpoints/last.ckpt")) and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # during epoch 1 (or later): after the first last.ckpt
    assert process.wait() == -signal.SIGKILL
    (first_run,) = runs.iterdir()
    interrupted = torch.load(first_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert interrupted["epoch"] < 3 and not (first_run / FINISHED).exists()
    if checkpoints:
        assert interrupted["global_step"] % 4, "the kill should follow a checkpoint written mid-epoch"
    time.sleep(1.0)  # the re-run gets a folder of its own (named by the second)
    result = subprocess.run(
        command, env={**env, "DAWN_ROOT": str(killed)}, check=True, capture_output=True, text=True
    )
    assert "resuming the unfinished run" in result.stderr + result.stdout
    assert (first_run / FINISHED).exists() and (
        killed / "experiments" / "stage2" / "latest"
    ).resolve() == first_run.resolve()

    expected, resumed = final_weights(straight), final_weights(killed)
    assert resumed["global_step"] == expected["global_step"] == (15 if checkpoints else 16)
    for key in ("state_dict", "current_model_state"):  # the EMA and the raw weights, bit for bit
        for name, value in expected[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)
    for index, moments in expected["optimizer_states"][0]["state"].items():
        assert torch.equal(resumed["optimizer_states"][0]["state"][index]["exp_avg"], moments["exp_avg"])
    assert resumed["lr_schedulers"][0]["last_epoch"] == expected["lr_schedulers"][0]["last_epoch"]
