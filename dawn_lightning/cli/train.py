"""`dawn-train` (`make train-stage1`, ...): train one stage, as its experiment config describes.

    dawn-train experiment=stage1 trainer=ddp trainer.devices=8
    dawn-train experiment=stage1_128 --multirun model.optimizer.lr=1e-4,2e-4

Returns the metric named by ``optimized_metric`` so Hydra sweepers (Optuna) can optimise it.
"""

from __future__ import annotations

import logging

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
    if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.last_model_path:
        log.info("last checkpoint: %s", trainer.checkpoint_callback.last_model_path)
    return (None if metric is None else float(metric)), trainer


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    metric, _ = train(cfg)
    return metric
