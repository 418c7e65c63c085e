"""The stages' checkpoint format: one record per stage kind, one writer, one reader, and where runs keep them.

A checkpoint is a dict that ``torch.load(weights_only=True)`` reads (tensors, numbers, strings, lists, dicts):

- ``state_dict``: the stage module's weights, the network's under ``net.`` and the data statistics as buffers
  beside them (stage 2: ``state_mean``, ``state_std``); the EMA average when the run kept one;
- ``current_model_state``: the raw weights beside an EMA average (Lightning's `WeightAveraging` key);
- the stage's record under its kind's key (`KEYS`): the network sizes (``config``) and, by kind,
  stage 2: ``class``, ``signals``, ``audio_features`` (the store's feature spec), optional ``units``;
  stage 3: ``motion_ckpt`` and ``motion_ckpt_sha256`` (the frozen stage 1), ``sampler``, ``audio_features``,
  ``frame_size``, ``store_kind`` (synthetic or real faces), ``mean_face_box``, optional ``initial_state``
  and ``warnings`` (imported weights);
- ``imported``: where imported weights came from (`dawn-import-dawn`), absent otherwise.

A model bundle (`bundles`, `dawn-export`) holds the same records in its ``config.json`` and each stage's
weights as ``<name>.safetensors`` beside it; `read` reads such a file like a checkpoint.

Lightning adds its training state (optimisers, loops, callbacks) to the checkpoints it writes; readers ignore
it. Stage 1's record is stored as its bare ``config`` under its key (the format's first version); `read`
returns every record with a ``config`` entry. Plain torch: no Lightning import here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

MOTION, POSE_BLINK, AUDIO_TO_MOTION, SYNCNET = "motion", "pose_blink", "audio_to_motion", "syncnet"
KEYS = {
    MOTION: "motion_autoencoder_config",
    POSE_BLINK: "pose_blink_generator",
    AUDIO_TO_MOTION: "motion_diffusion",
    SYNCNET: "compact_syncnet",
}
# how messages name each kind (short, long) and the command that trains one
DESCRIPTIONS = {
    MOTION: ("stage-1", "stage-1 (motion autoencoder)", "make train-stage1"),
    POSE_BLINK: ("stage-2", "stage-2 (pose/blink)", "make train-stage2"),
    AUDIO_TO_MOTION: ("stage-3", "stage-3 (motion diffusion)", "make train-stage3"),
    SYNCNET: ("SyncNet", "SyncNet", "make train-syncnet"),
}
BUNDLE_CONFIG = "config.json"  # a model bundle's description, beside its .safetensors files
RAW_WEIGHTS_KEY = "current_model_state"  # where `WeightAveraging` keeps the raw weights beside the average
NET_PREFIX = "net."
# the experiments of each generative stage, by the pipeline's names for them (`DawnPipeline`, checkpoints.* of
# conf/generate.yaml); stage 3: curriculum B (from A), or A alone (as `make demo`)
STAGE_TASKS = {"motion": ("stage1",), "pose_blink": ("stage2",), "diffusion": ("stage3b", "stage3a")}


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of the kind asked for; the message names the file."""


class WrongKindError(CheckpointError):
    """A readable checkpoint without the record of the kind asked for."""


@dataclass
class StageCheckpoint:
    """A stage checkpoint as read: its kind, record, weights (the EMA or the raw ones, as asked) and the
    import record of imported weights."""

    kind: str
    path: Path
    record: dict[str, Any]
    weights: dict[str, torch.Tensor]
    imported: dict[str, Any] | None = None
    progress: dict[str, int] | None = None  # Lightning's global_step and epoch, where training wrote them

    @property
    def net_weights(self) -> dict[str, torch.Tensor]:
        """The network's weights, without the ``net.`` prefix."""
        return {k.removeprefix(NET_PREFIX): v for k, v in self.weights.items() if k.startswith(NET_PREFIX)}


# -- writing -------------------------------------------------------------------------------------------------
def entry_of(kind: str, record: dict[str, Any]) -> Any:
    """What a kind's record looks like under its key on disk (stage 1: its bare config)."""
    if kind not in KEYS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; one of {', '.join(KEYS)}")
    if "config" not in record:
        raise ValueError(f"a {kind} checkpoint record needs 'config', got {sorted(record)}")
    return dict(record["config"]) if kind == MOTION else dict(record)


def add_record(checkpoint: dict, kind: str, record: dict[str, Any]) -> None:
    """Puts a stage's record into a checkpoint being written (a LightningModule's ``on_save_checkpoint``)."""
    entry = entry_of(kind, record)  # checks the kind and the record first
    checkpoint[KEYS[kind]] = entry


def net_state(net: torch.nn.Module, prefix: str = NET_PREFIX) -> dict[str, torch.Tensor]:
    """A network's weights under the ``net.`` prefix of a stage module's ``state_dict``."""
    return {f"{prefix}{k}": v for k, v in net.state_dict().items()}


def save(
    path: str | os.PathLike,
    kind: str,
    record: dict[str, Any],
    weights: dict[str, torch.Tensor],
    imported: dict[str, Any] | None = None,
) -> Path:
    """Writes a stage checkpoint outside training (imported weights, benchmarks, fixtures), atomically: a
    temporary name beside the target, then a rename. ``weights``: the stage module's ``state_dict`` keys
    (`net_state` plus any statistics buffers)."""
    path = Path(path)
    payload: dict[str, Any] = {"state_dict": dict(weights)}
    add_record(payload, kind, record)
    if imported is not None:
        payload["imported"] = imported
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# -- reading -------------------------------------------------------------------------------------------------
def load_file(path: str | os.PathLike, what: str, hint: str, map_location: Any = "cpu") -> dict:
    """``torch.load(weights_only=True)`` of a checkpoint file, every failure one line naming the file: no such
    file (FileNotFoundError, with ``hint`` on how to make one), pickled objects (refused, never loaded),
    truncated or not a checkpoint (`CheckpointError`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} checkpoint there ({hint})")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:  # not a pickle at all
            raise CheckpointError(f"{path}: truncated or not a checkpoint (not a PyTorch file)") from None
        raise CheckpointError(
            f"{path}: holds pickled Python objects ({found.group(1)}), not only tensors and plain values: "
            "refused, nothing in it was run"
        ) from None
    except Exception as error:  # a truncated zip, a foreign file: torch's many ways of failing
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise CheckpointError(f"{path}: truncated or not a checkpoint ({first})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


def read(path: str | os.PathLike, kind: str, ema: bool = True, map_location: Any = "cpu") -> StageCheckpoint:
    """A stage checkpoint of ``kind``: its record and, with ``ema``, the EMA weights when the run kept an
    average (else the raw ones). A bundle's ``.safetensors`` file is read with its ``config.json`` entry."""
    if Path(path).suffix == ".safetensors":
        return read_bundle_stage(Path(path), kind, map_location)
    short, what, command = DESCRIPTIONS[kind]
    checkpoint = load_file(path, short, f"train one with `{command}`", map_location)
    key = KEYS[kind]
    if key not in checkpoint:
        raise WrongKindError(f"{path}: not a {what} checkpoint: no {key!r} entry")
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: a {what} checkpoint without weights (no 'state_dict')")
    entry = checkpoint[key]
    record = {"config": dict(entry)} if kind == MOTION else dict(entry)
    weights = checkpoint["state_dict"] if ema else checkpoint.get(RAW_WEIGHTS_KEY, checkpoint["state_dict"])
    progress = {k: int(checkpoint[k]) for k in ("global_step", "epoch") if k in checkpoint}
    return StageCheckpoint(kind, Path(path), record, weights, checkpoint.get("imported"), progress or None)


def read_bundle_config(folder: str | os.PathLike) -> dict[str, Any]:
    """A model bundle's ``config.json``; errors name the file."""
    path = Path(folder) / BUNDLE_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a model bundle (no {BUNDLE_CONFIG}; dawn-export writes one)")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("stages"), list):
        raise CheckpointError(f"{path}: not a dawn-lightning bundle config (no 'stages' list)")
    return config


def read_bundle_stage(path: Path, kind: str, map_location: Any = "cpu") -> StageCheckpoint:
    """One stage of a model bundle: the weights of ``path`` (safetensors: nothing in it can run) and the
    record its ``config.json`` lists for that file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as load_safetensors

    short, what, _ = DESCRIPTIONS[kind]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {short} weights there")
    entry = next((e for e in read_bundle_config(path.parent)["stages"] if e.get("file") == path.name), None)
    if entry is None:
        raise CheckpointError(f"{path}: not listed in {path.parent / BUNDLE_CONFIG}")
    if entry.get("kind") != kind:
        raise WrongKindError(f"{path}: not {what} weights (the bundle lists it as {entry.get('kind')!r})")
    try:
        weights = load_safetensors(path, device=str(map_location))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: truncated or not a safetensors file ({error})") from None
    return StageCheckpoint(
        kind, path, dict(entry["record"]), weights, entry.get("imported"), entry.get("progress")
    )


def load_motion_autoencoder(path: str | os.PathLike, map_location: Any = "cpu"):
    """The `MotionAutoencoder` of a stage-1 checkpoint, in eval mode."""
    from dawn_lightning.models.motion.autoencoder import MotionAutoencoder

    checkpoint = read(path, MOTION, map_location=map_location)
    net = MotionAutoencoder(**checkpoint.record["config"])
    net.load_state_dict(checkpoint.net_weights, strict=True)
    return net.eval()


def load_pose_blink_generator(path: str | os.PathLike, map_location: Any = "cpu", ema: bool = True):
    """The generator of a stage-2 checkpoint (eval mode) and its record: {"mean", "std", "signals",
    "audio_features"} (the data statistics and the store's feature spec it was trained on). ``ema``: the EMA
    weights when the run kept an average, else the raw ones."""
    from dawn_lightning.models.pose_blink import GENERATORS

    checkpoint = read(path, POSE_BLINK, ema=ema, map_location=map_location)
    record = checkpoint.record
    net = GENERATORS[record["class"]](**record["config"])
    net.load_state_dict(checkpoint.net_weights)
    return net.eval(), {
        "mean": checkpoint.weights["state_mean"],
        "std": checkpoint.weights["state_std"],
        "signals": record["signals"],
        "audio_features": record.get("audio_features"),
    }


def load_motion_diffusion(path: str | os.PathLike, map_location: Any = "cpu", ema: bool = True):
    """The `MotionDiffusion` of a stage-3 checkpoint (eval mode) and its record (see the module's docstring).
    ``ema``: the EMA weights when the run kept an average, else the raw ones."""
    from dawn_lightning.models.audio_to_motion.motion_diffusion import MotionDiffusion

    checkpoint = read(path, AUDIO_TO_MOTION, ema=ema, map_location=map_location)
    net = MotionDiffusion.from_config(checkpoint.record["config"])
    net.load_state_dict(checkpoint.net_weights, strict=True)
    return net.eval(), checkpoint.record


def load_compact_syncnet(path: str | os.PathLike, setting: str = "metrics.lse.weights"):
    """The `CompactSyncNet` of a `make train-syncnet` checkpoint, in eval mode; errors name ``setting``."""
    from dawn_lightning.models.syncnet import CompactSyncNet

    try:
        checkpoint = read(path, SYNCNET)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{setting}: {path} does not exist (train a SyncNet with `make train-syncnet`)"
        ) from None
    except WrongKindError:
        raise WrongKindError(
            f"{setting}: {path} is not a `make train-syncnet` checkpoint (no {KEYS[SYNCNET]!r} entry); "
            "for the public syncnet_v2.model set metrics.lse.kind=syncnet_v2"
        ) from None
    except CheckpointError as error:
        raise CheckpointError(f"{setting}: {error}") from None
    net = CompactSyncNet(**checkpoint.record["config"])
    net.load_state_dict(checkpoint.net_weights)
    return net.eval()


# -- provenance ----------------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_motion_checkpoint(record: dict, motion_ckpt: str | os.PathLike) -> None:
    """Warns when the stage-1 checkpoint given at inference is not the one stage 3 was trained on."""
    if file_sha256(motion_ckpt) != record["motion_ckpt_sha256"]:
        log.warning(
            "stage 1 %s is not the checkpoint stage 3 was trained with (%s, sha256 %s...)",
            motion_ckpt,
            record["motion_ckpt"],
            record["motion_ckpt_sha256"][:12],
        )


# -- discovery -----------------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder (``experiments/<task>/latest`` or ``.../runs/<time>``): its
    ``checkpoints/last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        return path / "checkpoints" / "last.ckpt"
    return path


def latest_checkpoint(experiments_dir: str | os.PathLike, task: str) -> Path:
    """A task's newest finished run's checkpoint: ``<experiments>/<task>/latest/checkpoints/last.ckpt``."""
    return Path(experiments_dir) / task / "latest" / "checkpoints" / "last.ckpt"


def default_checkpoints(experiments_dir: str | os.PathLike = "experiments") -> dict[str, Path]:
    """The newest checkpoint of each generative stage's default experiment ({"motion", "pose_blink",
    "diffusion"}); for stage 3 the more recently written of curriculum B's and A's (B's path, for the error,
    if none exists)."""

    def newest(tasks: tuple[str, ...]) -> Path:
        paths = [latest_checkpoint(experiments_dir, task) for task in tasks]
        return max((p for p in paths if p.is_file()), key=lambda p: p.stat().st_mtime, default=paths[0])

    return {name: newest(tasks) for name, tasks in STAGE_TASKS.items()}
