"""`dawn-bench` (`make bench`): measured figures for the README, written as JSON. Heavier than a test."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dawn-bench", description=__doc__)
    parser.add_argument("stage", choices=["stage1"])
    parser.add_argument("--checkpoint", help="a stage-1 checkpoint to score on --store")
    parser.add_argument("--store", default="data/synthetic64")
    parser.add_argument("--out", default="experiments/bench")
    args = parser.parse_args(argv)
    from dawn_lightning.benchmarks import motion

    results = {
        "torch_threads": torch.get_num_threads(),
        "training": motion.training_speed(),
        "decode": [motion.decode_throughput("motion_64", 64), motion.decode_throughput("motion_128", 128)],
    }
    if args.checkpoint:
        results["quality"] = motion.reconstruction_quality(args.checkpoint, args.store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.stage}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
