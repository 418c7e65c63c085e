"""`dawn-synthetic` (`make data-synthetic`): write the synthetic talking-head clip store.

Overrides as usual: `dawn-synthetic data.frame_size=128 data.generator.identities.train=40 workers=8`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dawn_lightning.config import CONF_DIR

log = logging.getLogger("dawn_lightning.synthetic")


@hydra.main(config_path=str(CONF_DIR), config_name="synthetic", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from dawn_lightning.data.synthetic_store import build_synthetic_store, write_store_contact_sheet

    data = cfg.data
    store = build_synthetic_store(
        data.store_dir,
        frame_size=data.frame_size,
        generator=OmegaConf.to_container(data.generator, resolve=True),
        features=hydra.utils.instantiate(data.audio_features),
        frames_format=data.frames_format,
        workers=cfg.workers,
    )
    if cfg.contact_sheet:
        sheet = Path(data.store_dir) / "contact_sheet.png"
        write_store_contact_sheet(store, sheet)
        log.info("contact sheet: %s", sheet)
