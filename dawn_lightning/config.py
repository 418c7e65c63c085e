"""Where the Hydra configs live, and composing them outside a Hydra app (tests, notebooks)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
STATE_DIMS = {"pose": 6, "blink": 2, "both": 8}


def _state_dim(signals: str) -> int:
    if signals not in STATE_DIMS:
        raise ValueError(f"model.signals must be one of {sorted(STATE_DIMS)}, got {signals!r}")
    return STATE_DIMS[signals]


def _store_audio_dim(store_dir: str) -> int:
    from dawn_lightning.data.store import ClipStore

    return ClipStore(store_dir).audio_dim


# ${pose_blink_state_dim:${model.signals}} and ${store_audio_dim:${data.store_dir}}: sizes that follow from
# other settings or from the data, so a config never states them twice.
OmegaConf.register_new_resolver("pose_blink_state_dim", _state_dim, replace=True)
OmegaConf.register_new_resolver("store_audio_dim", _store_audio_dim, replace=True)


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
