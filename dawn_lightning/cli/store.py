"""`dawn-store`: inspect, validate, index and pack a clip store.

- ``dawn-store info <store>``: clips, frames and seconds per split.
- ``dawn-store validate <store>``: the full check (every clip, videos decoded); exit 1 listing the problems.
- ``dawn-store index <store>``: (re)write the index of a folder store from its clips (statistics and fast
  checks included), e.g. once every shard of ``dawn-preprocess shard=K num_shards=N`` has finished; refuses,
  naming them, while shards are unfinished. Also upgrades an index written by an older version.
- ``dawn-store pack <store> <out>``: a packed copy for streaming (LitData chunks; ``out`` a folder or an
  s3:// / gs:// address) that ``data.store_dir=<out>`` trains from.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.table import Table

from dawn_lightning.data.store import ClipStore, StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dawn-store", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="check every clip; exit 1 and list the problems if any")
    check.add_argument("store")
    check.add_argument("--no-decode", action="store_true", help="skip decoding videos (fast)")
    info = sub.add_parser("info", help="summarise a store")
    info.add_argument("store")
    index = sub.add_parser("index", help="write the index of a folder store (after sharded preprocessing)")
    index.add_argument("store")
    pack = sub.add_parser("pack", help="pack a folder store into LitData chunks for streaming")
    pack.add_argument("store")
    pack.add_argument("out", help="a new folder, or an s3:// / gs:// address")
    pack.add_argument("--workers", type=int, default=1, help="packing processes (default 1)")
    pack.add_argument("--chunk-bytes", default="256MB", help="size of a chunk file (default 256MB)")
    args = parser.parse_args(argv)
    console = Console(soft_wrap=True)  # a problem is one line, whatever the terminal width: greppable
    try:
        return COMMANDS[args.command](args, console)
    except (StoreError, FileNotFoundError) as error:
        console.print(f"[red]error[/red] {error}", highlight=False)
        return 1


def _validate(args, console: Console) -> int:
    from dawn_lightning.data.validate import validate_store

    problems = validate_store(args.store, decode=not args.no_decode)
    for problem in problems:
        console.print(f"[red]problem[/red] {problem}", highlight=False)
    if problems:
        console.print(f"{args.store}: {len(problems)} problems")
        return 1
    console.print(f"{args.store}: valid ({len(ClipStore(args.store).clips)} clips)")
    return 0


def _index(args, console: Console) -> int:
    from pathlib import Path

    from dawn_lightning.data.preprocess.run import speaker_splits
    from dawn_lightning.data.preprocess.shards import unfinished_shards
    from dawn_lightning.data.store import read_json
    from dawn_lightning.data.store_writer import build_index

    reasons = unfinished_shards(args.store)
    for reason in reasons:
        console.print(f"[red]unfinished[/red] {args.store}: {reason}", highlight=False)
    if reasons:
        console.print(f"{args.store}: index not written ({len(reasons)} shards unfinished)")
        return 1
    config = read_json(Path(args.store) / "store.json")["config"]
    split = config.get("split")  # preprocessing's split settings; the synthetic store's splits are fixed
    started = time.perf_counter()
    index = build_index(args.store, None if split is None else lambda s: speaker_splits(s, split))
    for problem in index["problems"]:
        console.print(f"[red]problem[/red] {problem}", highlight=False)
    console.print(
        f"{args.store}: index of {index['num_clips']} clips {index['splits']}, "
        f"{len(index['failed'])} failed, "
        f"{len(index['problems'])} problems, {time.perf_counter() - started:.1f} s",
        highlight=False,
    )
    return 1 if index["problems"] else 0


def _pack(args, console: Console) -> int:
    from dawn_lightning.data.pack import pack_store

    started = time.perf_counter()
    index = pack_store(args.store, args.out, args.chunk_bytes, args.workers, progress=True)
    console.print(
        f"{args.out}: {index['num_clips']} clips packed (LitData chunks), "
        f"{time.perf_counter() - started:.1f} s",
        highlight=False,
    )
    return 0


def _info(args, console: Console) -> int:
    store = ClipStore(args.store)
    table = Table(title=str(store.root) + (" (packed)" if store.packed else ""))
    for column in ("split", "clips", "frames", "seconds"):
        table.add_column(column)
    for split in ("train", "val", "test"):
        frames = int(store.split(split).num_frames.sum())
        table.add_row(split, str(len(store.split(split))), str(frames), f"{frames / store.index['fps']:.1f}")
    console.print(table)
    console.print(
        f"frame size {store.frame_size}, audio features {store.audio_spec}, "
        f"failed clips {len(store.index['failed'])}, config hash {store.index['config_hash']}"
    )
    return 0


COMMANDS = {"validate": _validate, "info": _info, "index": _index, "pack": _pack}

if __name__ == "__main__":
    sys.exit(main())
