"""The released DAWN files -> this project's stage checkpoints and an ``import.json`` of their sources.

    import_released("checkpoints/dawn128", lfg="LFG_128_1000ep.pth", a2v="DAWN_128.pth",
                    pbnet_pose="pbnet/pose", pbnet_blink="pbnet/blink")

writes ``stage1.ckpt`` (LFG), ``stage2_pose.ckpt`` and ``stage2_blink.ckpt`` (the two PBNets), ``stage3.ckpt``
(A2V) and ``import.json`` under the folder; each input is optional. Files are read with
``weights_only=True``; one that holds other pickled objects is refused unless ``trust_pickle``. Every input
is converted and checked (`mapping`) before anything is written; all failures are reported together. Top-level
entries besides the model's (optimiser state, epoch, example batch) are skipped and listed in import.json.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dawn_lightning import __version__, checkpoints
from dawn_lightning.checkpoints import AUDIO_TO_MOTION, MOTION, POSE_BLINK, file_sha256, net_state
from dawn_lightning.models.audio_to_motion.conditioning import FaceRegionEncoder
from dawn_lightning.models.audio_to_motion.motion_diffusion import MotionDiffusion
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.models.pose_blink.pbnet import PBNet
from dawn_lightning.released import conventions as C
from dawn_lightning.released.mapping import LFG_MODULES, load_checked, map_a2v, map_lfg, map_pbnet

log = logging.getLogger(__name__)
TOOL = "dawn-import-dawn"
OUTPUTS = {
    "motion": "stage1.ckpt",
    "pose": "stage2_pose.ckpt",
    "blink": "stage2_blink.ckpt",
    "diffusion": "stage3.ckpt",
}
RECORD = "import.json"
PBNET_WIDTHS = {"pose": 6, "blink": 2}
PBNET_ARCHITECTURE = "transformerreemb5"


class PickledCheckpointError(ValueError):
    """A file that ``weights_only=True`` refuses: it holds pickled Python objects besides tensors."""


@dataclass
class Source:
    """Where an imported network came from: the file, its SHA-256, the entries skipped, anything else."""

    path: Path
    sha256: str
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "skipped_entries": self.skipped} | (
            self.extra
        )


def read_checkpoint(path: Path, trust_pickle: bool = False) -> Mapping:
    """The dict a released file holds, read with ``weights_only=True`` (``weights_only=False`` only when
    ``trust_pickle`` and the safe read refused the file)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported operand" in str(error):  # not a pickle at all
            raise ValueError(f"{path}: not a readable PyTorch checkpoint (not a pickle)") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        needs = f" (e.g. {found.group(1)})" if found else ""
        if not trust_pickle:
            raise PickledCheckpointError(
                f"{path}: holds pickled Python objects besides tensors{needs}, which a safe load "
                "(weights_only=True) refuses. Unpickling can run any code the file contains: if you trust "
                "its source, pass --trust-pickle"
            ) from None
        log.warning("%s: loading pickled Python objects%s (--trust-pickle)", path, needs)
        data = _load(path, weights_only=False)
    except Exception as error:  # any other failure: not a checkpoint
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: holds a {type(data).__name__}, not a dict of state dicts")
    return data


def _load(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from None


def _entries(data: Mapping, path: Path, wanted: tuple[str, ...]) -> list[str]:
    """Checks that ``data`` has the ``wanted`` entries; returns the others (skipped, logged)."""
    missing = [k for k in wanted if k not in data]
    if missing:
        raise ValueError(
            f"{path}: no {', '.join(map(repr, missing))} entry (it has {sorted(map(str, data))}): not the "
            "expected released file"
        )
    skipped = sorted(str(k) for k in data if k not in wanted)
    if skipped:
        log.info("%s: skipping %s (the model is %s)", path, ", ".join(skipped), ", ".join(wanted))
    return skipped


# -- the three kinds of released file ------------------------------------------------------------------------
def import_lfg(path: str | os.PathLike, trust_pickle: bool = False) -> tuple[MotionAutoencoder, Source]:
    """LFG_128_1000ep.pth / LFG_256_400ep.pth -> `MotionAutoencoder` (stage 1)."""
    path = Path(path)
    data = read_checkpoint(path, trust_pickle)
    skipped = _entries(data, path, LFG_MODULES)
    net = MotionAutoencoder(**C.MOTION)
    load_checked(net, map_lfg({k: data[k] for k in LFG_MODULES}), str(path))
    return net.eval(), Source(path, file_sha256(path), skipped)


def import_a2v(path: str | os.PathLike, trust_pickle: bool = False) -> tuple[MotionDiffusion, Source]:
    """DAWN_128.pth / DAWN_256.pth -> `MotionDiffusion` (stage 3) with the reference's identity condition
    normalisation and a seeded face-region encoder (`conventions.FACE_ENCODER_SEED`)."""
    path = Path(path)
    data = read_checkpoint(path, trust_pickle)
    skipped = _entries(data, path, ("diffusion",))
    config = dict(C.MOTION_DIFFUSION)
    net = MotionDiffusion(**config, unet=dict(C.UNET))
    load_checked(net.unet, map_a2v(data["diffusion"]), str(path))
    net.face_encoder.load_state_dict(seeded_face_encoder(config).state_dict())
    net.has_statistics.fill_(True)  # audio mean 0 / std 1, pose and blink scale 1: raw, as the reference
    net.has_motion_scale.fill_(True)  # the "grid" target: x0 itself
    return net.eval(), Source(path, file_sha256(path), skipped, {"face_encoder_seed": C.FACE_ENCODER_SEED})


def seeded_face_encoder(config: Mapping[str, Any]) -> FaceRegionEncoder:
    """The face-region encoder of imported weights: PyTorch's default initialisation drawn after
    ``torch.manual_seed(FACE_ENCODER_SEED)``, without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(C.FACE_ENCODER_SEED)
        return FaceRegionEncoder(config["face_hidden_channels"], config["face_channels"])


def locate_pbnet(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """A PBNet folder (``checkpoint_<n>.pth.tar`` + ``opt.yaml``) or checkpoint file -> (checkpoint, opt)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("checkpoint_*.pth.tar"), key=_checkpoint_number)
        if not found:
            raise FileNotFoundError(f"{path}: no checkpoint_*.pth.tar in this PBNet folder")
        if len(found) > 1:
            log.info("%s: %d checkpoints, using the last (%s)", path, len(found), found[-1].name)
        checkpoint = found[-1]
    elif path.is_file():
        checkpoint = path
    else:
        raise FileNotFoundError(f"{path}: no such PBNet folder or file")
    opt = checkpoint.parent / "opt.yaml"
    return checkpoint, opt if opt.is_file() else None


def _checkpoint_number(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.name)
    return (int(digits[-1]) if digits else -1, path.name)


def read_opt(path: Path | None) -> dict[str, Any]:
    """The PBNet run's ``opt.yaml`` as a dict ({} when absent or unreadable: the defaults apply)."""
    if path is None:
        return {}
    import yaml

    try:
        opt = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        log.warning("%s: unreadable (%s); using DAWN's PBNet sizes", path, error)
        return {}
    return opt if isinstance(opt, dict) else {}


def import_pbnet(path: str | os.PathLike, signal: str, trust_pickle: bool = False) -> tuple[PBNet, Source]:
    """A released PBNet (folder or file) -> `PBNet` of ``signal`` "pose" (6 outputs) or "blink" (2). Sizes:
    DAWN's, overridden by the run's opt.yaml where it names them; the output width from the weights."""
    checkpoint, opt_path = locate_pbnet(path)
    data = read_checkpoint(checkpoint, trust_pickle)
    if "model" in data:
        skipped, state = _entries(data, checkpoint, ("model",)), data["model"]
    elif data and all(str(k).startswith(("encoder.", "decoder.")) for k in data):
        skipped, state = [], data  # a bare state dict
    else:
        raise ValueError(f"{checkpoint}: no 'model' entry (it has {sorted(map(str, data))}): not a PBNet")
    opt = read_opt(opt_path)
    architecture = opt.get("archiname", PBNET_ARCHITECTURE)
    if architecture != PBNET_ARCHITECTURE:
        raise ValueError(
            f"{opt_path}: archiname {architecture!r}; the released PBNets (and this importer) are "
            f"{PBNET_ARCHITECTURE!r}"
        )
    final = state.get("decoder.finallayer.bias")
    width = PBNET_WIDTHS[signal] if final is None else int(final.shape[0])
    if width != PBNET_WIDTHS[signal]:
        raise ValueError(
            f"{checkpoint}: a PBNet of {width} outputs, but a {signal} model has {PBNET_WIDTHS[signal]}: are "
            "the pose and blink models swapped?"
        )
    config = dict(C.PBNET) | {k: opt[k] for k in C.PBNET if isinstance(opt.get(k), int | float)}
    net = PBNet(state_dim=width, **config)
    load_checked(net, map_pbnet(state), str(checkpoint))
    extra = {"signal": signal}
    if opt_path is not None:
        extra |= {"opt": str(opt_path.resolve()), "opt_sha256": file_sha256(opt_path)}
    return net.eval(), Source(checkpoint, file_sha256(checkpoint), skipped, extra)


# -- writing our checkpoints ---------------------------------------------------------------------------------
def write_motion(net: MotionAutoencoder, source: Source, path: Path) -> None:
    checkpoints.save(path, MOTION, {"config": net.config}, net_state(net), source.record())


def write_pose_blink(net: PBNet, signal: str, source: Source, path: Path) -> None:
    mean, std = (C.POSE_MEAN, C.POSE_STD) if signal == "pose" else (C.BLINK_MEAN, C.BLINK_STD)
    record = {
        "class": "PBNet",
        "config": net.config,
        "signals": signal,
        "audio_features": dict(C.HUBERT_FEATURES),
        "units": C.STATE_UNITS[signal],
    }
    state = net_state(net) | {"state_mean": torch.tensor(mean), "state_std": torch.tensor(std)}
    checkpoints.save(path, POSE_BLINK, record, state, source.record())


def write_diffusion(
    net: MotionDiffusion, source: Source, motion_ckpt: Path, frame_size: int, path: Path
) -> None:
    record = {
        "config": net.config,
        "motion_ckpt": str(motion_ckpt.resolve()),
        "motion_ckpt_sha256": file_sha256(motion_ckpt),
        "sampler": dict(C.SAMPLER),
        "audio_features": dict(C.HUBERT_FEATURES),
        "frame_size": frame_size,
        "mean_face_box": list(C.MEAN_FACE_BOX),
        "initial_state": {"pose": list(C.DEFAULT_POSE), "blink": list(C.DEFAULT_BLINK)},
        "warnings": [C.FACE_ENCODER_WARNING],
    }
    checkpoints.save(path, AUDIO_TO_MOTION, record, net_state(net), source.record())


def frame_size_of(size: int | None, *names: str | os.PathLike | None) -> int:
    """``size``, or the 128/256 in the released file names (DAWN_128.pth, LFG_256_400ep.pth)."""
    if size is not None:
        if size not in C.FRAME_SIZES:
            raise ValueError(f"--size must be one of {C.FRAME_SIZES}, got {size}")
        return size
    found = {int(m) for n in names if n for m in re.findall(r"(?<!\d)(128|256)(?!\d)", Path(n).name)}
    if len(found) != 1:
        raise ValueError(
            "cannot tell the frame size from the file names "
            f"({', '.join(Path(n).name for n in names if n)}): pass --size 128 or --size 256"
        )
    return found.pop()


# -- the whole import ----------------------------------------------------------------------------------------
def import_released(
    out: str | os.PathLike,
    lfg: str | os.PathLike | None = None,
    a2v: str | os.PathLike | None = None,
    pbnet_pose: str | os.PathLike | None = None,
    pbnet_blink: str | os.PathLike | None = None,
    size: int | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Converts the given released files into checkpoints under ``out``; returns import.json's content."""
    if not any((lfg, a2v, pbnet_pose, pbnet_blink)):
        raise ValueError("nothing to convert: give at least one of --lfg, --a2v, --pbnet-pose, --pbnet-blink")
    out = Path(out)
    paths = {k: out / name for k, name in OUTPUTS.items()}
    frame_size = frame_size_of(size, a2v, lfg) if a2v else None
    if a2v and not lfg and not paths["motion"].is_file():
        raise ValueError(
            "--a2v needs the stage-1 model it was trained with: give --lfg too (or convert it into the same "
            f"--out first: {paths['motion']} does not exist)"
        )
    jobs: dict[str, Callable[[], tuple[torch.nn.Module, Source]]] = {}
    if lfg:
        jobs["lfg"] = lambda: import_lfg(lfg, trust_pickle)
    if pbnet_pose:
        jobs["pbnet_pose"] = lambda: import_pbnet(pbnet_pose, "pose", trust_pickle)
    if pbnet_blink:
        jobs["pbnet_blink"] = lambda: import_pbnet(pbnet_blink, "blink", trust_pickle)
    if a2v:
        jobs["a2v"] = lambda: import_a2v(a2v, trust_pickle)
    converted, errors = {}, []
    for name, job in jobs.items():
        try:
            converted[name] = job()
            log.info("%s: converted %s", name, converted[name][1].path)
        except (ValueError, FileNotFoundError) as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ValueError(f"{len(errors)} inputs failed:\n\n" + "\n\n".join(map(str, errors)))

    written = {}
    if "lfg" in converted:
        write_motion(*converted["lfg"], paths["motion"])
        written["motion"] = converted["lfg"][1]
    for signal in ("pose", "blink"):
        if f"pbnet_{signal}" in converted:
            net, source = converted[f"pbnet_{signal}"]
            write_pose_blink(net, signal, source, paths[signal])
            written[signal] = source
    if "a2v" in converted:
        write_diffusion(*converted["a2v"], paths["motion"], frame_size, paths["diffusion"])
        written["diffusion"] = converted["a2v"][1]
    return write_record(out, written, frame_size, trust_pickle)


def write_record(out: Path, written: dict[str, Source], frame_size: int | None, trust_pickle: bool) -> dict:
    """Adds this run's sources and checkpoints to ``out/import.json`` (kept from earlier runs otherwise)."""
    path = out / RECORD
    record = json.loads(path.read_text()) if path.is_file() else {}
    record |= {"tool": TOOL, "version": __version__}
    record.setdefault("checkpoints", {})
    for key, source in written.items():
        record["checkpoints"][key] = {
            "file": OUTPUTS[key],
            "sha256": file_sha256(out / OUTPUTS[key]),
            "source": source.record() | {"trust_pickle": trust_pickle},
        }
    frame_size = frame_size or record.get("conventions", {}).get("frame_size")
    record["conventions"] = {
        "audio_features": C.HUBERT_FEATURES,
        "pose": {"names": C.POSE_NAMES, "units": C.STATE_UNITS["pose"], "min": C.POSE_MIN, "max": C.POSE_MAX},
        "blink": {"names": C.BLINK_NAMES, "units": C.STATE_UNITS["blink"]},
        "sampler": C.SAMPLER,
        "face_encoder": {"seed": C.FACE_ENCODER_SEED, "note": C.FACE_ENCODER_WARNING},
        "frame_size": frame_size,
    }
    have = record["checkpoints"]
    overrides = {
        "motion": "checkpoints.motion",
        "pose": "checkpoints.pose",
        "blink": "checkpoints.blink",
        "diffusion": "checkpoints.diffusion",
    }
    if all(k in have for k in overrides):
        record["generate_overrides"] = [f"{o}={(out / OUTPUTS[k]).resolve()}" for k, o in overrides.items()]
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, path)
    return record
