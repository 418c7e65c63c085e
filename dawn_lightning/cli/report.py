"""`dawn-report` (`make report`): one table (markdown + CSV) and a plot of every run of a sweep folder.

dawn-report experiments/sweeps/window/2026-11-25_18-00-00
dawn-report                      # the newest sweep under experiments/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dawn_lightning.report import latest_sweep, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dawn-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a multirun folder (default: the newest one)")
    parser.add_argument(
        "--experiments", type=Path, default=Path("experiments"), help="where sweeps are found"
    )
    parser.add_argument(
        "--metric", help="the metric to sort by and plot (default: the runs' optimized_metric)"
    )
    parser.add_argument(
        "--out", type=Path, help="where to write report.{md,csv,png} (default: the sweep folder)"
    )
    args = parser.parse_args(argv)
    paths = write_report(args.sweep_dir or latest_sweep(args.experiments), args.out, args.metric)
    print(paths["md"].read_text())
    print("written:", *paths.values())
    return 0
