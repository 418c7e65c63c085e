"""Model bundles in the Hugging Face model layout: what `dawn-export` writes and
`DawnPipeline.from_pretrained` reads, from a folder or a hub repository id (through `huggingface_hub`'s
cache; offline once cached).

    config.json                  the stages (file, kind, record, training progress) and a summary: network
                                 sizes, audio-feature spec, sampler defaults, data statistics, frame size,
                                 the stage-1 hash
    motion.safetensors           stage 1
    pose_blink.safetensors       stage 2 (or pose.safetensors + blink.safetensors: a released pair)
    audio_to_motion.safetensors  stage 3 (its record's motion_ckpt_sha256: motion.safetensors' hash)
    README.md                    the model card
    <encoder>/                   the audio encoder's model folder, for features that need one (HuBERT for
                                 the released DAWN), named as the checkpoints record it

Weights only (safetensors: nothing in a bundle can run code). Each stage's record is the checkpoint's
(`checkpoints`), so a bundle loads through the same stage loaders and checks.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from dawn_lightning import __version__
from dawn_lightning.checkpoints import (
    AUDIO_TO_MOTION,
    BUNDLE_CONFIG,
    MOTION,
    POSE_BLINK,
    file_sha256,
    read,
    read_bundle_config,
    resolve_checkpoint,
)

FORMAT = "dawn-lightning-bundle"
FORMAT_VERSION = 1
# bundle stage name -> (checkpoint kind, file)
STAGES = {
    "motion": (MOTION, "motion.safetensors"),
    "pose_blink": (POSE_BLINK, "pose_blink.safetensors"),
    "pose": (POSE_BLINK, "pose.safetensors"),
    "blink": (POSE_BLINK, "blink.safetensors"),
    "audio_to_motion": (AUDIO_TO_MOTION, "audio_to_motion.safetensors"),
}
LICENCE_NOTE = "other  # set the licence of the data this model was trained on"


class BundleError(ValueError):
    """A bundle that cannot be found or read; the message names the folder or repository."""


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON values (tensors as lists); anything else is refused, naming ``where``."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise BundleError(f"{where}: {type(value).__name__} cannot be written to {BUNDLE_CONFIG}")


def _write_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # safetensors refuses shared or non-contiguous storage: each tensor its own copy
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}, str(path))


def export_bundle(
    out: str | os.PathLike,
    motion: str | os.PathLike,
    pose_blink: str | os.PathLike | tuple[str | os.PathLike, str | os.PathLike],
    diffusion: str | os.PathLike,
    metrics: dict[str, float] | None = None,
    ema: bool = True,
    audio_encoder: str | os.PathLike | None = None,
) -> Path:
    """Writes a bundle of the three stages' checkpoints (files or run folders; stage 2 one checkpoint or a
    (pose-only, blink-only) pair) at ``out``, atomically: a temporary folder beside it, then a rename.
    ``metrics``: evaluation figures for the model card. ``ema``: the EMA weights where a run kept them.
    ``audio_encoder``: the model folder of the audio features (HuBERT, ...), copied into the bundle under the
    name the checkpoints record (safetensors weights only when it has them)."""
    out = Path(out)
    if out.exists():
        raise BundleError(f"{out}: exists; choose a new folder for the bundle")
    sources = {"motion": motion, "audio_to_motion": diffusion}
    if isinstance(pose_blink, tuple | list):
        sources |= {"pose": pose_blink[0], "blink": pose_blink[1]}
    else:
        sources["pose_blink"] = pose_blink
    stages = {
        name: read(resolve_checkpoint(path), STAGES[name][0], ema=ema) for name, path in sources.items()
    }
    temporary = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.mkdir(parents=True)
    try:
        entries = []
        motion_sha256 = None
        for name in ("motion", "pose_blink", "pose", "blink", "audio_to_motion"):
            if name not in stages:
                continue
            checkpoint, file = stages[name], STAGES[name][1]
            record = dict(checkpoint.record)
            if name == "audio_to_motion":  # its stage 1 is now the bundle's motion.safetensors
                record |= {"motion_ckpt": STAGES["motion"][1], "motion_ckpt_sha256": motion_sha256}
            _write_weights(temporary / file, checkpoint.weights)
            if name == "motion":
                motion_sha256 = file_sha256(temporary / file)
            entries.append(
                {
                    "name": name,
                    "kind": checkpoint.kind,
                    "file": file,
                    "source": str(checkpoint.path),
                    "record": _plain(record, f"{checkpoint.path}: record"),
                    "progress": checkpoint.progress,
                    **({"imported": _plain(checkpoint.imported, "imported")} if checkpoint.imported else {}),
                }
            )
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "dawn_lightning": __version__}
        config |= summary(stages, motion_sha256) | {"stages": entries}
        if audio_encoder is not None:
            config["audio_encoder"] = copy_encoder(Path(audio_encoder), config["audio_features"], temporary)
        (temporary / BUNDLE_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
        (temporary / "README.md").write_text(model_card(config, metrics))
        os.replace(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return out


def copy_encoder(folder: Path, spec: dict[str, Any] | None, bundle: Path) -> str:
    """Copies an audio encoder's model folder into ``bundle`` under the model name ``spec`` records (the
    name generation checks); returns that name."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a model folder (no config.json)")
    name = Path(str((spec or {}).get("model") or folder.name)).name
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if any(p.suffix == ".safetensors" for p in files):  # no pickled copy beside safetensors weights
        files = [p for p in files if p.suffix not in (".bin", ".pt", ".pth", ".h5", ".msgpack")]
    (bundle / name).mkdir()
    for path in files:
        shutil.copyfile(path, bundle / name / path.name)  # follows the hub cache's links to its blobs
    return name


def summary(stages: dict, motion_sha256: str | None) -> dict[str, Any]:
    """The bundle-level facts of config.json: network sizes, audio features, sampler defaults, data
    statistics, frame size and the stage-1 hash."""
    diffusion = stages["audio_to_motion"].record
    statistics = {}
    for name in ("pose_blink", "pose", "blink"):
        if name in stages:
            weights = stages[name].weights
            signals = stages[name].record.get("signals")
            statistics[name] = {
                "signals": signals,
                "mean": weights["state_mean"].tolist(),
                "std": weights["state_std"].tolist(),
            }
    return {
        "network_sizes": {name: _plain(s.record["config"], name) for name, s in stages.items()},
        "audio_features": _plain(diffusion.get("audio_features"), "audio_features"),
        "sampler": _plain(diffusion.get("sampler"), "sampler"),
        "frame_size": diffusion.get("frame_size"),
        "store_kind": diffusion.get("store_kind"),
        "statistics": statistics,
        "motion_sha256": motion_sha256,
    }


def model_card(config: dict[str, Any], metrics: dict[str, float] | None) -> str:
    """The bundle's README.md: what the model is, its training data and steps, the evaluation's figures when
    given, the licence left for the user, and how to load it."""
    audio = config.get("audio_features") or {}
    sampler = config.get("sampler") or {}
    rows = []
    for entry in config["stages"]:
        progress = entry.get("progress") or {}
        steps = progress.get("global_step")
        rows.append(
            f"| {entry['name']} | `{entry['file']}` | {'-' if steps is None else steps} | "
            f"{progress.get('epoch', '-')} | {entry.get('imported', {}).get('source', entry['source'])} |"
        )
    lines = [
        "---",
        "library_name: dawn-lightning",
        "pipeline_tag: image-to-video",
        "tags: [talking-head, audio-driven, diffusion, dawn]",
        f"license: {LICENCE_NOTE}",
        "---",
        "",
        "# DAWN talking-head model (dawn-lightning bundle)",
        "",
        "A portrait and a speech recording in, a talking-head video out, generated all at once (DAWN, "
        "arXiv 2410.13726): stage 1 motion autoencoder, stage 2 head pose and blinks from the audio, stage 3 "
        "audio-to-motion diffusion over the whole clip.",
        "",
        f"- frame size: {config.get('frame_size')} px; training data: "
        f"{config.get('store_kind') or 'unknown'} faces",
        f"- audio features: {audio.get('kind', 'unknown')}, {audio.get('dim', '?')} wide, one row per "
        f"{audio.get('hop', '?')} samples at {audio.get('sample_rate', '?')} Hz",
        f"- default sampler: {sampler.get('name')} with {sampler.get('num_steps')} steps, guidance "
        f"{sampler.get('guidance_scale', 1.0)}",
        f"- written by dawn-lightning {config.get('dawn_lightning')}",
        "",
        "## Training",
        "",
        "| stage | file | steps | epochs | from |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "## Evaluation",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [
            f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
        ]
    else:
        lines.append("Not evaluated when exported (`dawn-evaluate`, then `dawn-export --metrics <json>`).")
    lines += [
        "",
        "## Licence",
        "",
        "To be filled in by whoever publishes this model: the licence of the data it was trained on (and of "
        "any released weights it was imported from) decides what may be done with it.",
        "",
        "## Use",
        "",
        "```python",
        "from dawn_lightning.pipeline import DawnPipeline",
        "",
        'pipeline = DawnPipeline.from_pretrained("path/to/this/folder")  # or a hub repository id',
        'pipeline("portrait.png", "speech.wav", seed=0).save("talk.mp4")',
        "```",
        "",
        "`dawn-generate bundle=path/to/this/folder portrait=portrait.png speech=speech.wav out=talk.mp4`",
        "",
    ]
    return "\n".join(lines)


def resolve_bundle(name: str | os.PathLike, revision: str | None = None) -> Path:
    """A bundle folder: ``name`` itself when it is one, else a hub repository id (``owner/name``) from
    `huggingface_hub`'s cache, downloading when online (``HF_HUB_OFFLINE=1``: the cache alone)."""
    path = Path(name).expanduser()
    if path.is_dir():
        read_bundle_config(path)  # a clear error when the folder is not a bundle
        return path
    text = str(name)
    if path.is_absolute() or text.startswith(".") or text.count("/") != 1:
        raise FileNotFoundError(f"{name}: no bundle folder there (and not a hub repository id owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(text, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BundleError(
            f"{name}: neither a bundle folder nor a hub repository in the local cache "
            f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}): "
            f"download it once where there is a network (huggingface-cli download {name}); {first}"
        ) from None
    read_bundle_config(folder)
    return folder


def bundle_checkpoints(folder: Path) -> dict[str, Any]:
    """The stage files of a bundle as `DawnPipeline.from_checkpoints` takes them: {"motion", "pose_blink" (a
    file, or a (pose, blink) pair), "diffusion"}, and "audio_encoder" (its model folder, or None)."""
    config = read_bundle_config(folder)
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{folder / BUNDLE_CONFIG}: format {config.get('format')!r} version "
            f"{config.get('format_version')}, this version reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    files = {entry["name"]: folder / entry["file"] for entry in config["stages"]}
    missing = [n for n in ("motion", "audio_to_motion") if n not in files]
    if "pose_blink" not in files and not {"pose", "blink"} <= set(files):
        missing.append("pose_blink")
    if missing:
        raise BundleError(f"{folder / BUNDLE_CONFIG}: no {', '.join(missing)} stage listed")
    pose_blink = files["pose_blink"] if "pose_blink" in files else (files["pose"], files["blink"])
    stages = {"motion": files["motion"], "pose_blink": pose_blink, "diffusion": files["audio_to_motion"]}
    encoder = config.get("audio_encoder")
    return stages | {"audio_encoder": None if encoder is None else folder / encoder}
