"""`dawn-store`: inspect and validate a clip store."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.validate import validate_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dawn-store", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="check every clip; exit 1 and list the problems if any")
    check.add_argument("store")
    check.add_argument("--no-decode", action="store_true", help="skip decoding videos (fast)")
    info = sub.add_parser("info", help="summarise a store")
    info.add_argument("store")
    args = parser.parse_args(argv)
    console = Console(soft_wrap=True)  # a problem is one line, whatever the terminal width: greppable
    if args.command == "validate":
        problems = validate_store(args.store, decode=not args.no_decode)
        for problem in problems:
            console.print(f"[red]problem[/red] {problem}", highlight=False)
        if problems:
            console.print(f"{args.store}: {len(problems)} problems")
            return 1
        console.print(f"{args.store}: valid ({len(ClipStore(args.store).clips)} clips)")
        return 0
    try:
        store = ClipStore(args.store)
    except StoreError as error:
        console.print(f"[red]{error}[/red]", highlight=False)
        return 1
    table = Table(title=str(store.root))
    for column in ("split", "clips", "frames", "seconds"):
        table.add_column(column)
    for split in ("train", "val", "test"):
        clips = store.split(split)
        frames = sum(c.num_frames for c in clips)
        table.add_row(split, str(len(clips)), str(frames), f"{frames / store.index['fps']:.1f}")
    console.print(table)
    console.print(
        f"frame size {store.frame_size}, audio features {store.audio_spec}, "
        f"failed clips {len(store.index['failed'])}, config hash {store.index['config_hash']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
