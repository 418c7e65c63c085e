"""HuBERT audio features from a local model folder (e.g. a copy of facebook/hubert-large-ls960-ft) through
`transformers` (the `hubert` extra), interpolated from HuBERT's 50 Hz to exactly one row per video frame.

Nothing is downloaded: ``hubert_path`` must name a folder that `HubertModel.from_pretrained` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE
from dawn_lightning.tensors.frames import fit_length

HUBERT_URL = "https://huggingface.co/facebook/hubert-large-ls960-ft"
HOP, WINDOW = 320, 400  # HuBERT's convolutional front end: one feature every 20 ms, each over 25 ms


@dataclass(frozen=True)
class HubertFeatures:
    """Hidden states of layer ``layer`` (-1: the last) of a HuBERT model, (T, hidden_size) per clip."""

    hubert_path: str | None = None
    layer: int = -1
    kind: str = "hubert"

    def __post_init__(self):
        if not self.hubert_path:
            raise FileNotFoundError(
                "HuBERT features need the setting audio_features.hubert_path=/path/to/hubert-large-ls960-ft "
                f"(a local copy of {HUBERT_URL}, e.g. `git clone` it)"
            )
        config = Path(self.hubert_path) / "config.json"
        if not config.is_file():
            raise FileNotFoundError(
                f"{config}: missing; audio_features.hubert_path must be a HuBERT model folder "
                f"(from {HUBERT_URL})"
            )

    @property
    def dim(self) -> int:
        return int(json.loads((Path(self.hubert_path) / "config.json").read_text())["hidden_size"])

    @property
    def spec(self) -> dict:
        return {
            "kind": self.kind,
            "model": Path(self.hubert_path).name,
            "path": str(Path(self.hubert_path).resolve()),  # where generation looks when not told
            "layer": self.layer,
            "dim": self.dim,
            "sample_rate": SAMPLE_RATE,
            "fps": FPS,
        }

    def __call__(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """Features (num_frames, dim) float32 of 16 kHz mono ``audio`` (N,)."""
        import torch

        audio = fit_length(np.asarray(audio, dtype=np.float32), num_frames)
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)  # as HuBERT's feature extractor does
        model = _load(str(Path(self.hubert_path).resolve()))
        with torch.inference_mode():
            out = model(torch.from_numpy(audio)[None], output_hidden_states=True)
        hidden = out.hidden_states[self.layer][0].float().numpy()  # (~num_frames * 2, dim)
        times = (np.arange(len(hidden)) * HOP + WINDOW / 2) / SAMPLE_RATE  # each row's centre
        instants = (np.arange(num_frames) + 0.5) / FPS  # the middle of each video frame
        features = np.stack([np.interp(instants, times, column) for column in hidden.T], axis=1)
        return features.astype(np.float32)


def recorded_layer(spec: dict) -> int | None:
    """The hidden-state layer a recorded HuBERT ``spec`` used: its ``layer``, or -1 for the released DAWN's
    ``"output": "last_hidden_state"`` (None when it names another output)."""
    if "layer" in spec:
        return int(spec["layer"])
    return -1 if spec.get("output", "last_hidden_state") == "last_hidden_state" else None


def hubert_from_spec(spec: dict, hubert_path: str | None = None, setting: str = "audio_features.hubert_path"):
    """The HuBERT extractor for features recorded as ``spec`` (a store's or a checkpoint's): the model folder
    is ``hubert_path`` (the setting named ``setting``), else the folder the spec records when it still
    exists. No folder -> FileNotFoundError naming the setting and where to get the model; a folder whose
    model differs from the recorded one (name, layer or width) -> ValueError naming both."""
    recorded = Path(str(spec.get("model") or "?")).name
    wanted = f"{spec.get('model', 'a HuBERT model')} ({spec.get('dim', '?')}-wide)"
    if not hubert_path:
        stored = spec.get("path")
        if stored and (Path(stored) / "config.json").is_file():
            hubert_path = stored
        else:
            moved = f"; the folder they were made with, {stored}, no longer holds the model" if stored else ""
            raise FileNotFoundError(
                f"these checkpoints were trained on HuBERT features of {wanted}: set {setting}="
                f"/path/to/{recorded}, a local folder of that model (facebook/hubert-large-ls960-ft: "
                f"`git clone {HUBERT_URL}`; needs the `hubert` extra){moved}"
            )
    folder = Path(hubert_path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder / 'config.json'}: missing; {setting} must be a HuBERT model folder (e.g. a local copy "
            f"of {HUBERT_URL})"
        )
    layer = recorded_layer(spec)
    extractor = HubertFeatures(str(folder), -1 if layer is None else layer)
    name = recorded if recorded in (folder.name, folder.resolve().name) else folder.resolve().name
    mine = {"model": name, "layer": extractor.layer, "dim": extractor.dim}
    theirs = {"model": recorded, "layer": layer, "dim": spec.get("dim")}
    rates = (spec.get("sample_rate", SAMPLE_RATE), spec.get("fps", FPS)) == (SAMPLE_RATE, FPS)
    if mine != theirs or not rates:
        raise ValueError(
            "the audio feature extractor differs from the one the checkpoints were trained with:\n"
            f"  trained with: HuBERT {theirs} (recorded spec {spec})\n"
            f"  configured:   HuBERT {mine} from {setting}={hubert_path}\n"
            f"point {setting} at the model the checkpoints were trained with (a folder named {recorded!r})"
        )
    return extractor


@cache
def _load(path: str):
    try:
        from transformers import HubertModel
    except ImportError as error:
        raise ImportError("HuBERT features need the `hubert` extra: pip install -e '.[hubert]'") from error
    return HubertModel.from_pretrained(path).eval()
