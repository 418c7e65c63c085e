"""Shared fixtures: small clip stores made on the fly (nothing is downloaded or committed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.store import SIGNAL_DIMS, ClipRecord
from dawn_lightning.data.store_writer import StoreWriter

SIZE = 32


def simple_clip(
    clip_id: str, num_frames: int, split: str = "train", seed: int = 0, identity: str | None = None
) -> ClipRecord:
    """A clip with distinct, smoothly moving frames and random (finite) signals."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)[:, None, None]
    y, x = np.mgrid[:SIZE, :SIZE]
    frames = np.stack(
        [
            (x * 6 + t * 5) % 256,
            (y * 6 + t * 3) % 256,
            np.broadcast_to((t * 7 + seed * 50) % 256, (num_frames, SIZE, SIZE)),
        ],
        axis=-1,
    ).astype(np.uint8)
    audio = (0.1 * rng.standard_normal(num_frames * 640)).astype(np.float32)
    signals = {name: rng.random((num_frames, dim)).astype(np.float32) for name, dim in SIGNAL_DIMS.items()}
    signals["audio_features"] = LogMelFeatures(n_mels=8)(audio, num_frames)
    meta = {"identity": identity or clip_id}
    return ClipRecord(clip_id, frames, audio, signals, split, meta)


def make_writer(root, frames_format: str = "mp4", config: dict | None = None) -> StoreWriter:
    features = LogMelFeatures(n_mels=8)
    return StoreWriter(root, config or {"kind": "test"}, features.spec, SIZE, frames_format)


@pytest.fixture
def tiny_store(tmp_path):
    """A valid store: 3 train clips (two share an identity), 1 val, 1 test."""
    writer = make_writer(tmp_path / "store")
    lengths = {
        "a": (30, "train"),
        "b": (45, "train"),
        "c": (12, "train"),
        "v": (25, "val"),
        "t": (25, "test"),
    }
    for k, (clip_id, (frames, split)) in enumerate(lengths.items()):
        writer.write(simple_clip(clip_id, frames, split, seed=k, identity="p1" if clip_id in "ab" else None))
    writer.finalize()
    return tmp_path / "store"


GENERATOR = {
    "seed": 3,
    "identities": {"train": 2, "val": 1, "test": 1},
    "clips_per_identity": 2,
    "seconds": [1.6, 2.4],
}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small synthetic store at 64 px: 4 identities (2 train), 2 clips each, 40-60 frames per clip."""
    from dawn_lightning.data.synthetic_store import build_synthetic_store

    root = tmp_path_factory.mktemp("synthetic") / "store"
    return build_synthetic_store(root, 64, GENERATOR, LogMelFeatures(), workers=2)


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: one thread avoids thread-pool waits that dominate on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny random stage 1-3 checkpoints (tests/pipeline_fixtures.py), written once per session."""
    from tests.pipeline_fixtures import tiny_checkpoints

    return tiny_checkpoints(tmp_path_factory.getbasetemp() / "dawn_checkpoints")


@pytest.fixture
def tiny_pack(tiny_store):
    """`tiny_store` packed into LitData chunks (beside it)."""
    from dawn_lightning.data.pack import pack_store

    pack_store(str(tiny_store), str(tiny_store.parent / "pack"), chunk_bytes="64KB")
    return tiny_store.parent / "pack"


@pytest.fixture(scope="session")
def synthetic_pack(synthetic, tmp_path_factory):
    """The `synthetic` store packed (small chunks, so a clip's neighbours sit in other files)."""
    from dawn_lightning.data.pack import pack_store

    out = tmp_path_factory.mktemp("synthetic_pack") / "pack"
    pack_store(str(synthetic.root), str(out), chunk_bytes="1MB")
    return out


@pytest.fixture
def stub_face(monkeypatch):
    """Preprocessing with the stand-in face backend (`BoxFace`: the middle of every bright frame)."""
    from dawn_lightning.data.preprocess import run
    from tests.preprocess_videos import BoxFace

    monkeypatch.setattr(run, "make_backend", lambda *args: BoxFace())
