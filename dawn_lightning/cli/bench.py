"""`dawn-bench` (`make bench`): measured figures for the README, written as JSON. Heavier than a test."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dawn-bench", description=__doc__)
    parser.add_argument("stage", choices=["stage1", "stage2"])
    parser.add_argument("--checkpoint", help="a checkpoint of that stage to score (stage 2 needs one)")
    parser.add_argument("--store", default="data/synthetic64")
    parser.add_argument("--out", default="experiments/bench")
    args = parser.parse_args(argv)
    results = {"torch_threads": torch.get_num_threads()}
    if args.stage == "stage1":
        from dawn_lightning.benchmarks import motion

        results["training"] = motion.training_speed()
        results["decode"] = [
            motion.decode_throughput(name, size) for name, size in (("motion_64", 64), ("motion_128", 128))
        ]
        if args.checkpoint:
            results["quality"] = motion.reconstruction_quality(args.checkpoint, args.store)
    else:
        from dawn_lightning.benchmarks import pose_blink

        if not args.checkpoint:
            parser.error("stage2 needs --checkpoint (a `make train-stage2` checkpoint)")
        results["long_generation"] = pose_blink.long_generation(args.checkpoint, args.store)
        results["quality"] = pose_blink.track_quality(args.checkpoint, args.store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.stage}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
