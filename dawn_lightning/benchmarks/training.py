"""Training throughput of each stage as `dawn-train` runs it: the experiment's config, data loading from the
store and the optimiser included, validation, logging and checkpoints left out (`dawn-bench train`)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
import torch

from dawn_lightning.benchmarks.motion import model_config
from dawn_lightning.checkpoints import MOTION, net_state, save
from dawn_lightning.config import compose
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.training.speed import compile_network

EXPERIMENTS = {"stage1": "stage1", "stage2": "stage2", "stage3": "stage3a"}


class StepTimes(L.Callback):
    """perf_counter() after every training batch."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter())


def random_stage1(path: Path, model: str = "motion_64") -> Path:
    """A stage-1 checkpoint with random weights (stage 3's speed does not depend on them)."""
    net = MotionAutoencoder(**model_config(model))
    return save(path, MOTION, {"config": net.config}, net_state(net))


def training_speed(
    stage: str, store: str, steps: int = 10, warmup: int = 2, overrides: Sequence[str] = ()
) -> dict:
    """Samples per second over ``steps`` training batches after ``warmup`` ones, with ``overrides`` of the
    stage's experiment (trainer.precision=bf16-mixed, compile=true, model.activation_checkpointing=true)."""
    with tempfile.TemporaryDirectory() as folder:
        extra = [] if stage != "stage3" else [f"model.motion_ckpt={random_stage1(Path(folder) / 's1.ckpt')}"]
        cfg = compose(
            "train",
            [f"experiment={EXPERIMENTS[stage]}", f"data.store_dir={store}", f"hydra.run.dir={folder}"]
            + extra
            + list(overrides),
        )
        L.seed_everything(cfg.seed, verbose=False)
        datamodule = hydra.utils.instantiate(cfg.datamodule)
        model = hydra.utils.instantiate(cfg.model)
        compile_network(model, cfg.get("compile"))
        timer = StepTimes()
        trainer = hydra.utils.instantiate(
            cfg.trainer,
            max_epochs=1,
            max_steps=-1,
            limit_train_batches=warmup + steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        trainer.fit(model, datamodule=datamodule)
    seconds = timer.times[-1] - timer.times[warmup - 1]
    batch = cfg.datamodule.batch_size
    return {
        "stage": stage,
        "experiment": EXPERIMENTS[stage],
        "overrides": list(overrides),
        "batch": batch,
        "precision": str(cfg.trainer.precision),
        "steps": steps,
        "samples_per_s": batch * steps / seconds,
        "seconds_per_step": seconds / steps,
        "torch_threads": torch.get_num_threads(),
    }


def markdown(results: list[dict]) -> str:
    rows = ["| stage | batch | precision | overrides | samples/s | s/step |", "|---|---|---|---|---|---|"]
    for r in results:
        rows.append(
            f"| {r['experiment']} | {r['batch']} | {r['precision']} | {' '.join(r['overrides']) or '-'} "
            f"| {r['samples_per_s']:.1f} | {r['seconds_per_step']:.3f} |"
        )
    return "\n".join(rows)
