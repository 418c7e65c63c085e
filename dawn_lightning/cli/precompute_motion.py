"""`dawn-precompute-motion` (`make precompute-motion`): stage 3's curriculum-A targets by the frozen stage 1.

    dawn-precompute-motion data.store_dir=data/hdtf128 motion_ckpt=runs/lfg.ckpt device=cuda
    dawn-train experiment=stage3a_128 data.store_dir=data/hdtf128 model.motion_ckpt=runs/lfg.ckpt \\
        datamodule.motion_dir=data/hdtf128/motion/stage1-f20-s4
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from dawn_lightning.allocator import keep_freed_memory
from dawn_lightning.config import CONF_DIR

log = logging.getLogger("dawn_lightning.precompute_motion")


@hydra.main(config_path=str(CONF_DIR), config_name="precompute_motion", version_base="1.3")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()
    from dawn_lightning.data.motion_targets import precompute_motion_targets

    counts = precompute_motion_targets(
        cfg.data.store_dir,
        cfg.motion_ckpt,
        cfg.out,
        frames=cfg.frames,
        stride=cfg.stride,
        splits=tuple(cfg.splits),
        batch_size=cfg.batch_size,
        device=cfg.device,
    )
    log.info(
        "%d clips done, %d skipped (done before or shorter than %d frames), %d failed: %s",
        counts["done"],
        counts["skipped"],
        cfg.frames,
        counts["failed"],
        cfg.out,
    )
