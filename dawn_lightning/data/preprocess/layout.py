"""Which videos a folder holds, who speaks in each (the speaker id), and which split each speaker goes to.

Layouts: ``hdtf`` (one long video per speaker-session, ``WRA_MarcoRubio_000.mp4``: the speaker is the name
without its trailing number), ``voxceleb`` (``<speaker>/<youtube id>/<clip>.mp4``) and ``generic`` (any
tree: the speaker is the first folder under the input, or the file name for videos at its top).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAYOUTS = ("hdtf", "voxceleb", "generic")


@dataclass(frozen=True)
class VideoJob:
    path: str
    video_id: str  # unique in the store; clip ids are <video_id>_<k>
    speaker: str
    split: str


def find_videos(root: str | os.PathLike, layout: str, extensions: list[str]) -> list[tuple[Path, str, str]]:
    """(path, video id, speaker) of every video under ``root``, sorted by path."""
    if layout not in LAYOUTS:
        raise ValueError(f"preprocess.layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input folder not found")
    suffixes = {e.lower().lstrip(".") for e in extensions}
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in suffixes)
    found = []
    for path in paths:
        parts = path.relative_to(root).with_suffix("").parts
        if layout == "hdtf":
            speaker = re.sub(r"_\d+$", "", parts[-1])
        elif layout == "voxceleb":
            speaker = parts[0] if len(parts) >= 3 else parts[-1]
        else:
            speaker = parts[0]
        found.append((path, _safe("_".join(parts)), _safe(speaker)))
    return found


def assign_splits(
    speakers: list[str], seed: int, val: float, test: float, lists: dict[str, str | None]
) -> dict[str, str]:
    """speaker -> split. Speakers named in ``lists`` (split -> a file of speaker ids, one a line) go there;
    the rest are shuffled with ``seed`` and cut by the fractions ``val`` and ``test`` (at least one speaker
    each when there are three or more)."""
    chosen = {}
    for split, list_file in lists.items():
        if list_file:
            try:
                names = Path(list_file).read_text().split()
            except OSError as error:
                raise FileNotFoundError(
                    f"{list_file}: cannot read the {split} speaker list ({error})"
                ) from None
            chosen |= {_safe(name): split for name in names}
    rest = sorted(set(speakers) - set(chosen))
    order = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    counts = [int(round(f * len(order))) for f in (val, test)]
    if len(order) >= 3:
        counts = [max(1, c) if f > 0 else 0 for c, f in zip(counts, (val, test), strict=True)]
    bounds = np.cumsum(counts)
    for i, speaker in enumerate(order):
        chosen[speaker] = "val" if i < bounds[0] else "test" if i < bounds[1] else "train"
    return {s: chosen[s] for s in speakers}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "video"
