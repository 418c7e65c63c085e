"""Every config composes, and every object it describes can be built."""

import itertools

import hydra
import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from dawn_lightning.config import CONF_DIR, compose
from dawn_lightning.data.datamodules import StoreDataModule


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_groups_exist():
    for group in ("paths", "data", "datamodule", "trainer", "logger", "callbacks", "debug", "experiment"):
        assert options(group), f"conf/{group}/ is empty"


@pytest.mark.parametrize(
    ("trainer", "logger"), list(itertools.product(options("trainer"), options("logger")))
)
def test_train_config_composes(trainer, logger):
    cfg = compose("train", [f"trainer={trainer}", f"logger={logger}"])
    OmegaConf.resolve(cfg)
    assert cfg.trainer._target_ == "lightning.pytorch.trainer.Trainer"
    assert cfg.paths.experiments_dir.endswith("experiments")
    assert "/experiments/train/runs/" in cfg.paths.output_dir


@pytest.mark.parametrize("datamodule", options("datamodule"))
@pytest.mark.parametrize("debug", [None, *options("debug")])
def test_datamodules_and_debug_presets_compose_and_build(tiny_store, datamodule, debug):
    overrides = [f"datamodule={datamodule}", f"data.store_dir={tiny_store}"]
    cfg = compose("train", overrides + ([f"debug={debug}"] if debug else []))
    dm = hydra.utils.instantiate(cfg.datamodule)
    assert isinstance(dm, StoreDataModule) and dm.store_dir == str(tiny_store)
    if debug:
        expected = {
            "fast": ("fast_dev_run", True),
            "overfit": ("overfit_batches", 2),
            "limit": ("limit_train_batches", 5),
        }[debug]
        assert cfg.task_name == "debug" and cfg.trainer[expected[0]] == expected[1]


def test_trainer_logger_callbacks_build(tmp_path):
    cfg = compose("train", ["logger=many", f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1"])
    assert HydraConfig.get().runtime.output_dir == str(tmp_path) == cfg.paths.output_dir
    loggers = [hydra.utils.instantiate(c) for c in cfg.logger.values()]
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    assert {type(x).__name__ for x in loggers} == {"TensorBoardLogger", "CSVLogger"}
    assert {type(x).__name__ for x in callbacks} == {
        "ModelCheckpoint",
        "LearningRateMonitor",
        "RichProgressBar",
        "TrainingMonitor",
        "RandomState",
        "LogSamples",
    }
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    assert trainer.max_epochs == 1
    assert type(trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"


def test_stage3b_inherits_stage3a():
    cfg = compose("train", ["datamodule=stage3b"]).datamodule
    assert (cfg.mode, cfg.min_frames, cfg.num_frames, cfg.batch_size) == ("random", 30, 40, 4)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose_for_training(experiment, tiny_store):
    cfg = compose("train", [f"experiment={experiment}", f"data.store_dir={tiny_store}"])
    OmegaConf.resolve(cfg)
    if experiment.startswith("stage1"):
        assert cfg.model._target_.endswith("MotionAutoencoderModule") and cfg.task_name == experiment
        assert cfg.datamodule._target_.endswith("FramePairDataModule")
    if experiment.startswith("stage2"):
        assert cfg.model.net.audio_dim == 8 and cfg.model.net.state_dim == 8  # from the store and the signals
    if experiment.startswith(("stage2", "stage3")):  # every generative stage averages its weights
        assert cfg.callbacks.ema._target_.endswith("EMA")


def test_command_line_model_overrides_the_experiment():
    cfg = compose("train", ["experiment=stage1", "model=motion_256", "trainer=ddp", "trainer.devices=8"])
    assert cfg.model.net.flow.num_blocks == 5 and cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 8


@pytest.mark.parametrize("experiment", [None, "synthetic128"])
def test_synthetic_config_composes(experiment):
    cfg = compose("synthetic", [f"experiment={experiment}"] if experiment else [])
    OmegaConf.resolve(cfg)
    features = hydra.utils.instantiate(cfg.data.audio_features)
    assert features.dim == cfg.data.audio_features.n_mels
    assert cfg.data.store_dir.endswith(f"data/synthetic{cfg.data.frame_size}")
