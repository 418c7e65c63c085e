"""`dawn-evaluate` (`make evaluate`): score a run's generated videos (or a folder of mp4s) against the truth.

    dawn-evaluate run=experiments data.store_dir=data/synthetic64 split=test
    dawn-evaluate generated_dir=theirs/ real_dir=truth/ out=experiments/evaluation/theirs

The settings are in conf/evaluate.yaml; the report lands in ``out`` (metrics.json, report.md, tensorboard/).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from dawn_lightning.allocator import keep_freed_memory
from dawn_lightning.config import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()
    from dawn_lightning.evaluation import evaluate, markdown

    try:
        record = evaluate(OmegaConf.to_container(cfg, resolve=True))
    except (
        FileNotFoundError,
        ValueError,
    ) as error:  # bad inputs, settings or weights: the message says which
        raise SystemExit(f"dawn-evaluate: error: {error}") from None
    print(markdown(record))
