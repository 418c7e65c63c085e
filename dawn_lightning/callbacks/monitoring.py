"""What a run reports beyond its losses: gradient norms, throughput, memory (a callback), and its resolved
config (printed as a tree at start, and given to TensorBoard as text)."""

from __future__ import annotations

import resource
import time
from collections import deque
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

PAGE_BYTES = resource.getpagesize()
GIB = 1024**3


def batch_size(batch: Any) -> int:
    """The number of samples of a batch: a tensor's first dimension, or that of a dict's/sequence's first."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, dict):
        return batch_size(next(iter(batch.values())))
    if isinstance(batch, list | tuple):
        return batch_size(batch[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__}")


def cpu_memory_gib() -> dict[str, float]:
    """This process's resident memory now and at its peak, GiB (Linux)."""
    with open("/proc/self/statm") as handle:
        resident = int(handle.read().split()[1]) * PAGE_BYTES
    return {
        "rss_gib": resident / GIB,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


class TrainingMonitor(Callback):
    """Logs at every training batch (the logger writes every ``trainer.log_every_n_steps``):

    - ``train/grad_norm`` (``train/grad_norm_<i>`` for a module's further optimisers, e.g. a discriminator):
      the L2 norm of all gradients before clipping;
    - ``train/samples_per_sec``: training samples of all ranks over the wall time of the last ``window``
      batches (data loading, logging and the optimiser included; validation excluded);
    - ``memory/rss_gib``, ``memory/peak_rss_gib`` (this process) and, on CUDA, ``memory/cuda_gib``,
      ``memory/cuda_peak_gib``;
    - ``train/skipped_clips``, every ``log_every_n_steps`` batches and at the epoch's end: the clips the data
      module could not read and skipped (``data.on_bad_clip=skip``), as listed in the run's bad_clips.jsonl.
    """

    def __init__(self, grad_norm: bool = True, window: int = 20):
        self.grad_norm = grad_norm
        self._marks: deque[tuple[float, int]] = deque(maxlen=window + 1)  # (time, samples so far)

    def _restart(self, *_) -> None:
        self._marks.clear()
        self._marks.append((time.perf_counter(), 0))

    on_train_epoch_start = _restart
    on_validation_end = _restart  # validation time is not training time

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not self.grad_norm or not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]
        index = optimizers.index(getattr(optimizer, "optimizer", optimizer))
        pl_module.log(f"train/grad_norm{f'_{index}' if index else ''}", norm, on_step=True, on_epoch=False)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        if not self._marks:
            self._restart()
        self._marks.append((time.perf_counter(), self._marks[-1][1] + batch_size(batch) * trainer.world_size))
        (start, first), (now, last) = self._marks[0], self._marks[-1]
        metrics = {f"memory/{k}": v for k, v in cpu_memory_gib().items()}
        if now > start:
            metrics["train/samples_per_sec"] = (last - first) / (now - start)
        if pl_module.device.type == "cuda":
            metrics["memory/cuda_gib"] = torch.cuda.memory_allocated(pl_module.device) / GIB
            metrics["memory/cuda_peak_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / GIB
        if (batch_idx + 1) % max(1, trainer.log_every_n_steps) == 0:
            metrics["train/skipped_clips"] = float(skipped_clips(trainer))
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("train/skipped_clips", float(skipped_clips(trainer)), rank_zero_only=True)


def skipped_clips(trainer: L.Trainer) -> int:
    """The clips the data module skipped so far, all ranks and loader workers together (its bad-clips file),
    or those this process saw when it has no file."""
    from dawn_lightning.data.datasets import count_bad_clips

    bad = getattr(getattr(trainer, "datamodule", None), "bad_clips", None)
    if bad is None:
        return 0
    return count_bad_clips(bad.path) if bad.path is not None else len(bad)


@rank_zero_only
def print_config_tree(cfg: DictConfig) -> None:
    """The composed config as a tree, one branch per top-level group, unresolved values shown resolved."""
    from rich import print as rich_print
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        tree.add(str(key)).add(Syntax(text, "yaml", theme="ansi_dark"))
    rich_print(tree)


@rank_zero_only
def log_config_text(loggers: list, cfg: DictConfig) -> None:
    """The resolved config, as YAML text, to every logger that takes text (TensorBoard: the Text tab)."""
    text = "```yaml\n" + OmegaConf.to_yaml(cfg, resolve=True) + "```"
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_text"):
            experiment.add_text("config", text, 0)
