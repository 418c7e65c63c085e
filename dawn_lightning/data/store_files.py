"""Files of a clip store: the error every reader raises, atomic JSON writes, and reads of a store's small
files, local or at an object-store address."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np


class StoreError(ValueError):
    """A clip store, or a clip in it, is missing, malformed or inconsistent. The message names the path."""


def config_hash(config: dict) -> str:
    """A short, stable hash of a JSON-serialisable config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data) -> None:
    """Written under a name no other process or machine uses, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{path}: not valid JSON ({error})") from None


def is_remote(root: str | os.PathLike) -> bool:
    return "://" in str(root)


def read_bytes(root: str | os.PathLike, name: str) -> bytes:
    """A small file of a store, local or at an object-store address (through obstore, LitData's client)."""
    if not is_remote(root):
        try:
            return (Path(root) / name).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{Path(root) / name}: missing") from None
    import obstore
    from obstore.store import from_url

    try:
        return bytes(obstore.get(from_url(str(root)), name).bytes())
    except FileNotFoundError:
        raise StoreError(f"{root}/{name}: missing") from None


def load_signals(path: Path) -> dict[str, np.ndarray]:
    """A clip's per-frame arrays, each (T, D) float32."""
    try:
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except (OSError, ValueError) as error:
        raise StoreError(f"{path}: unreadable ({error})") from None


def write_bytes(root: str | os.PathLike, name: str, data: bytes) -> None:
    """A small file of a store, written atomically (locally: renamed into place; an object store's put is
    atomic)."""
    if not is_remote(root):
        path = Path(root) / name
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return
    import obstore
    from obstore.store import from_url

    obstore.put(from_url(str(root)), name, data)
