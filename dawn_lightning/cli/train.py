"""`dawn-train` (`make train-stage1`, ...): train one stage, as its experiment config describes.

    dawn-train experiment=stage1 trainer=ddp trainer.devices=8
    dawn-train experiment=stage1_128 --multirun model.optimizer.lr=1e-4,2e-4

Returns the metric named by ``optimized_metric`` so Hydra sweepers (Optuna) can optimise it. Lightning and
the stages are imported once the config is composed, so ``dawn-train --help`` answers at once.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dawn_lightning.allocator import keep_freed_memory
from dawn_lightning.config import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from dawn_lightning.training.run import train

    keep_freed_memory()
    metric, _ = train(cfg)
    return metric
