"""`dawn-export`: the three stages' checkpoints -> a model bundle in the Hugging Face layout (safetensors,
config.json, a README.md model card) that `DawnPipeline.from_pretrained` and `dawn-generate bundle=...` load.

    dawn-export bundles/dawn64                        # each stage's newest run under experiments/
    dawn-export bundles/dawn128 --motion runs/s1 --pose-blink runs/s2 --diffusion runs/s3b \
        --metrics experiments/evaluate/metrics.json

Upload the folder as it is (`huggingface-cli upload <owner>/<name> bundles/dawn64`), after filling in the
model card's licence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dawn-export", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the bundle folder to write (must not exist)")
    p.add_argument("--run", default="experiments", help="where each stage's newest run is looked up")
    p.add_argument("--motion", help="stage-1 checkpoint or run folder (default: the newest stage1 run)")
    p.add_argument(
        "--pose-blink",
        nargs="+",
        help="stage-2 checkpoint or run folder, or two: pose-only then blink-only (default: newest stage2)",
    )
    p.add_argument(
        "--diffusion", help="stage-3 checkpoint or run folder (default: newer of stage3b, stage3a)"
    )
    p.add_argument("--metrics", help="a JSON file of evaluation figures for the model card (name -> value)")
    p.add_argument(
        "--raw", action="store_true", help="the raw weights, not the EMA average where one was kept"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from dawn_lightning.bundles import export_bundle
    from dawn_lightning.checkpoints import CheckpointError, default_checkpoints

    defaults = default_checkpoints(args.run)
    pose_blink = args.pose_blink or [defaults["pose_blink"]]
    if len(pose_blink) > 2:
        raise SystemExit("dawn-export: error: --pose-blink takes one checkpoint, or two (pose, blink)")
    try:
        metrics = None if args.metrics is None else _metrics(Path(args.metrics))
        out = export_bundle(
            args.out,
            args.motion or defaults["motion"],
            pose_blink[0] if len(pose_blink) == 1 else tuple(pose_blink),
            args.diffusion or defaults["diffusion"],
            metrics=metrics,
            ema=not args.raw,
        )
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        raise SystemExit(f"dawn-export: error: {error}") from None
    for path in sorted(out.iterdir()):
        print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB", file=sys.stdout)


def _metrics(path: Path) -> dict:
    """Numbers of a JSON object (nested objects flattened with '/'), for the model card."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON file ({error})") from None
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix] = value

    walk("", data)
    if not flat:
        raise ValueError(f"{path}: no numbers in it")
    return flat


if __name__ == "__main__":
    main()
