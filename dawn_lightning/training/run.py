"""One training run of a stage, as its composed config describes: build the data module, the module, the
loggers, callbacks and trainer; resume the unfinished earlier run of the same command; fit; write the summary
and link ``<task>/latest`` to a finished run."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from dawn_lightning.callbacks.monitoring import log_config_text, print_config_tree
from dawn_lightning.report import write_summary
from dawn_lightning.resume import claim, find_resumable_run, mark_finished
from dawn_lightning.training.speed import compile_network

log = logging.getLogger("dawn_lightning.train")


def train(cfg: DictConfig) -> tuple[float | None, L.Trainer]:
    if cfg.get("model") is None:
        raise ValueError("no model is configured: pick a stage, e.g. `dawn-train experiment=stage1`")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and cfg.get("resume"):
        ckpt_path = continue_unfinished_run(cfg)
    claim(Path(cfg.paths.output_dir))
    print_config_tree(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.datamodule)
    model = hydra.utils.instantiate(cfg.model)
    compile_network(model, cfg.get("compile"))
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    if trainer.world_size > 1:  # the model is built alike on every rank; the noise and augmentations differ
        L.seed_everything(cfg.seed + trainer.global_rank, workers=True, verbose=False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log_config_text(loggers, cfg)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    if trainer.is_global_zero and not trainer.interrupted:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        facts = {"fit_seconds": time.perf_counter() - start, "steps": trainer.global_step}
        write_summary(Path(cfg.paths.output_dir), metrics, cfg.get("optimized_metric"), **facts)
    last = newest_last_checkpoint(trainer)
    if last is not None:
        log.info("last checkpoint: %s", last)
        if trainer.is_global_zero and not trainer.interrupted:
            mark_finished(Path(cfg.paths.output_dir))
            link_latest_run(Path(cfg.paths.output_dir))
    return (None if metric is None else float(metric)), trainer


def newest_last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest ``last.ckpt`` a checkpoint callback wrote: ``callbacks.last_checkpoint`` (a callback whose
    file is named "last") or one with ``save_last``."""
    written = [
        Path(path)
        for callback in trainer.checkpoint_callbacks
        for path in (callback.last_model_path, callback.best_model_path)
        if path
    ]
    lasts = [path for path in written if path.stem == "last" and path.is_file()]
    return max(lasts, key=lambda path: path.stat().st_mtime, default=None)


def continue_unfinished_run(cfg: DictConfig) -> str | None:
    """The checkpoint of the unfinished earlier run of the same command (see `dawn_lightning.resume`), whose
    folder becomes this run's output folder; None when there is none."""
    from hydra.core.hydra_config import HydraConfig

    found = find_resumable_run(Path(cfg.paths.output_dir), list(HydraConfig.get().overrides.task))
    if found is None:
        return None
    run_dir, checkpoint = found
    log.info("resuming the unfinished run %s from %s (resume=false starts afresh)", run_dir, checkpoint)
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir))
    for logger in (cfg.get("logger") or {}).values():
        if logger.get("_target_", "").endswith("CSVLogger"):  # it would overwrite the run's metrics.csv
            logger.version = f"resumed_{Path(HydraConfig.get().runtime.output_dir).name}"
    return str(checkpoint)


def link_latest_run(run_dir: Path) -> None:
    """Points ``<task>/latest`` at a finished single run (``<task>/runs/<time>``), atomically, so later stages
    and `make` name a stage's newest checkpoint as ``experiments/<task>/latest/checkpoints/last.ckpt``.
    Sweep jobs are left alone: which of them is "latest" means nothing."""
    if run_dir.parent.name != "runs":
        return
    link = run_dir.parent.parent / "latest"
    temporary = link.with_name(f".latest.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(Path("runs") / run_dir.name)
    os.replace(temporary, link)
    log.info("%s -> %s", link, run_dir)
