"""Where the Hydra configs live, and composing them outside a Hydra app (tests, notebooks)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """The composed config ``conf/<config_name>.yaml`` as a single run's task would see it: ``HydraConfig`` is
    set (with the run folder as the output folder) so ``${hydra:...}`` resolves, and the ``hydra`` node is
    not part of the returned config."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=overrides or [], return_hydra_config=True)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = cfg.hydra.run.dir
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
