"""`dawn-train` (`make train-stage1`, ...): train one stage, as its experiment config describes.

    dawn-train experiment=stage1 trainer=ddp trainer.devices=8
    dawn-train experiment=stage1_128 --multirun model.optimizer.lr=1e-4,2e-4

Returns the metric named by ``optimized_metric`` so Hydra sweepers (Optuna) can optimise it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from dawn_lightning.config import CONF_DIR

log = logging.getLogger("dawn_lightning.train")


def train(cfg: DictConfig) -> tuple[float | None, L.Trainer]:
    if cfg.get("model") is None:
        raise ValueError("no model is configured: pick a stage, e.g. `dawn-train experiment=stage1`")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.datamodule)
    model = hydra.utils.instantiate(cfg.model)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback is not None else ""
    if last and Path(last).is_file():
        log.info("last checkpoint: %s", last)
        if trainer.is_global_zero and not trainer.interrupted:
            link_latest_run(Path(cfg.paths.output_dir))
    return (None if metric is None else float(metric)), trainer


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


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    metric, _ = train(cfg)
    return metric
