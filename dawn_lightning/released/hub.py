"""The released DAWN files (Hugging Face ``Hanbo-Cheng/DAWN``) and HuBERT-large from the hub, through
`huggingface_hub`'s cache: downloaded once where there is a network, read from the cache afterwards
(``HF_HUB_OFFLINE=1``: the cache alone)."""

from __future__ import annotations

import os
from pathlib import Path

RELEASED_REPO = "Hanbo-Cheng/DAWN"
HUBERT_REPO = "facebook/hubert-large-ls960-ft"
# the released files by frame size (the authors' README); PBNet: pbnet/{pose,blink}/checkpoint_*.pth.tar, opt
LFG_FILES = {128: "LFG_128_1000ep.pth", 256: "LFG_256_400ep.pth"}
A2V_FILES = {128: "DAWN_128.pth", 256: "DAWN_256.pth"}
PBNET_PATTERNS = [
    "*pose/checkpoint_*.pth.tar",
    "*pose/opt.yaml",
    "*blink/checkpoint_*.pth.tar",
    "*blink/opt.yaml",
]


def fetch(repo: str, patterns: list[str]) -> Path:
    """The snapshot folder of ``repo`` holding the files that match ``patterns`` (from the cache when there;
    a FileNotFoundError naming the repository and the cache otherwise)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, allow_patterns=patterns))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise FileNotFoundError(
            f"{repo}: not in the local hub cache ({cache}) and not downloadable here: fetch it once where "
            f"there is a network (huggingface-cli download {repo}); {first}"
        ) from None


def released_files(resolution: int, repo: str = RELEASED_REPO) -> dict[str, Path]:
    """{"lfg", "a2v", "pose", "blink"} of the released set at ``resolution`` px: two files and the two PBNet
    folders."""
    if resolution not in LFG_FILES:
        raise ValueError(f"--resolution must be one of {sorted(LFG_FILES)}, got {resolution}")
    folder = fetch(repo, [LFG_FILES[resolution], A2V_FILES[resolution], *PBNET_PATTERNS])
    found: dict[str, Path] = {}
    for key, name in (("lfg", LFG_FILES[resolution]), ("a2v", A2V_FILES[resolution])):
        match = sorted(folder.rglob(name))
        if match:
            found[key] = match[0]
    for signal in ("pose", "blink"):
        folders = sorted({p.parent for p in folder.rglob("checkpoint_*.pth.tar") if p.parent.name == signal})
        if folders:
            found[signal] = folders[0]
    missing = [k for k in ("lfg", "a2v", "pose", "blink") if k not in found]
    if missing:
        raise FileNotFoundError(
            f"{repo} (snapshot {folder}): no {', '.join(missing)} file for {resolution} px "
            f"(expected {LFG_FILES[resolution]}, {A2V_FILES[resolution]}, pbnet/pose/ and pbnet/blink/)"
        )
    return found


def hubert_folder(repo: str = HUBERT_REPO) -> Path:
    """A local HuBERT model folder from the hub cache: its configs and safetensors weights (the pickled
    ``.bin`` only when the repository has no safetensors)."""
    folder = fetch(repo, ["*.json", "*.safetensors"])
    if not any(folder.glob("*.safetensors")):
        folder = fetch(repo, ["*.json", "*.bin"])
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{repo} (snapshot {folder}): no config.json, not a model folder")
    return folder
