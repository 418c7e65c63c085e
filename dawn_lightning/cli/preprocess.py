"""`dawn-preprocess` (`make preprocess`): real talking-head videos -> the clip store.

`dawn-preprocess input=/data/HDTF output=data/hdtf128 size=128 preprocess=hdtf workers=2`; `dry_run=true`
lists the videos (speaker, split, finished or to do) without writing anything. Exits 1 when the run cannot
start or a video failed. Over machines: `dawn-preprocess -m shard='range(0,N)' num_shards=N
hydra/launcher=slurm ...` runs N shards (each video in exactly one), then `dawn-store index <output>`.
"""

from __future__ import annotations

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dawn_lightning.config import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="preprocess", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from dawn_lightning.data.preprocess.run import PreprocessError, Settings, preprocess
    from dawn_lightning.data.store import StoreError

    console = Console(soft_wrap=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    settings = Settings(plain["size"], plain["face"], plain["crop"], plain["chunk_frames"], plain["keep_mb"])
    try:
        try:
            features = hydra.utils.instantiate(cfg.audio_features)
        except InstantiationException as error:  # say what is wrong, not where Hydra called it
            raise error.__cause__ or error from None
        config = {
            "kind": "preprocess",
            **plain["preprocess"],
            "size": settings.size,
            "face": {k: v for k, v in settings.face.items() if k not in ("model_path", "verbose")},
            "crop": settings.crop,
            "split": plain["split"],
            # hashed: a HuBERT model folder that moved (its spec's "path") is still the same feature
            "audio_features": {k: v for k, v in features.spec.items() if k != "path"},
        }
        summary = preprocess(
            cfg.input,
            cfg.output,
            config,
            features,
            settings,
            cfg.workers,
            cfg.dry_run,
            cfg.progress,
            cfg.shard,
            cfg.num_shards,
        )
    except (PreprocessError, StoreError, FileNotFoundError, ImportError) as error:
        console.print(f"[red]error[/red] {error}", highlight=False)
        sys.exit(1)
    for result in summary.results:
        if cfg.dry_run or result.status in ("skipped", "failed"):
            console.print(f"{result.status:8} {result.path}: {result.reason}", highlight=False)
    counts = summary.as_dict()["videos"]
    console.print(
        f"{cfg.output}: {counts['done']} videos done, {counts['finished']} finished before, "
        f"{counts['skipped']} skipped, {counts['failed']} failed, {summary.dropped} short clips dropped"
        + (
            f", {summary.index['num_clips']} clips in the store"
            if summary.index
            else " (dry run)"
            if cfg.dry_run
            else f" (shard {cfg.shard} of {cfg.num_shards}; then `dawn-store index {cfg.output}`)"
        )
        + f", {summary.seconds:.1f} s",
        highlight=False,
    )
    if counts["failed"]:
        sys.exit(1)
