"""Audio features from pretrained speech encoders in local model folders, through `transformers` (the
`hubert` extra): HuBERT (what the released DAWN was trained on), wav2vec 2.0 and the Whisper encoder. Their
hidden states come at 50 Hz and are interpolated to exactly one row per video frame.

Nothing is downloaded: ``model_path`` names a folder that the model's ``from_pretrained`` reads (e.g. a copy
of facebook/hubert-large-ls960-ft, facebook/wav2vec2-base-960h or openai/whisper-base). The spec records the
kind, the model's name, folder, layer and width, so a model is always fed the features it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE
from dawn_lightning.tensors.frames import fit_length

SETTING = "audio_features.model_path"  # the setting that names the folder, in conf/preprocess and generate
HUBERT_URL = "https://huggingface.co/facebook/hubert-large-ls960-ft"
HOP, WINDOW = 320, 400  # the convolutional front ends: one feature every 20 ms, each over 25 ms
WHISPER_SECONDS = 30  # the Whisper encoder reads 30-s windows of log-mel, 1500 rows each
NAMES = {"hubert": "HuBERT", "wav2vec2": "wav2vec 2.0", "whisper": "Whisper"}
EXAMPLES = {
    "hubert": HUBERT_URL,
    "wav2vec2": "https://huggingface.co/facebook/wav2vec2-base-960h",
    "whisper": "https://huggingface.co/openai/whisper-base",
}


def _to_frames(hidden: np.ndarray, num_frames: int) -> np.ndarray:
    """50 Hz rows (n, dim) -> (num_frames, dim) float32 at 25 fps: linear interpolation at each video frame's
    middle from each row's centre."""
    times = (np.arange(len(hidden)) * HOP + WINDOW / 2) / SAMPLE_RATE
    instants = (np.arange(num_frames) + 0.5) / FPS
    return np.stack([np.interp(instants, times, column) for column in hidden.T], axis=1).astype(np.float32)


@dataclass(frozen=True)
class EncoderFeatures:
    """Hidden states of layer ``layer`` (-1: the last) of a pretrained speech encoder, (T, width) per clip."""

    model_path: str | None = None
    layer: int = -1
    kind: str = "encoder"

    def __post_init__(self):
        if not self.model_path:
            raise FileNotFoundError(
                f"{NAMES.get(self.kind, self.kind)} features need the setting {SETTING}=/path/to/model, "
                f"a local model folder (e.g. a copy of {EXAMPLES.get(self.kind, 'the model')})"
            )
        config = Path(self.model_path) / "config.json"
        if not config.is_file():
            raise FileNotFoundError(f"{config}: missing; {SETTING} must be a {self.kind} model folder")

    @property
    def config(self) -> dict:
        return json.loads((Path(self.model_path) / "config.json").read_text())

    @property
    def dim(self) -> int:
        config = self.config
        return int(config.get("hidden_size") or config["d_model"])

    @property
    def spec(self) -> dict:
        return {
            "kind": self.kind,
            "model": Path(self.model_path).name,
            "path": str(Path(self.model_path).resolve()),  # where generation looks when not told
            "layer": self.layer,
            "dim": self.dim,
            "sample_rate": SAMPLE_RATE,
            "fps": FPS,
        }

    def hidden_states(self, audio: np.ndarray) -> np.ndarray:
        """(n, dim) rows at 50 Hz of 16 kHz mono ``audio``."""
        raise NotImplementedError

    def __call__(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """Features (num_frames, dim) float32 of 16 kHz mono ``audio`` (N,)."""
        audio = fit_length(np.asarray(audio, dtype=np.float32), num_frames)
        return _to_frames(self.hidden_states(audio), num_frames)


@dataclass(frozen=True)
class _CTCEncoderFeatures(EncoderFeatures):
    """HuBERT and wav2vec 2.0: normalised waveform in, hidden states out (their feature extractors' steps)."""

    def hidden_states(self, audio: np.ndarray) -> np.ndarray:
        import torch

        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)  # as their feature extractors do
        model = _load(self.kind, str(Path(self.model_path).resolve()))
        with torch.inference_mode():
            out = model(torch.from_numpy(audio)[None], output_hidden_states=True)
        return out.hidden_states[self.layer][0].float().numpy()


@dataclass(frozen=True)
class HubertFeatures(_CTCEncoderFeatures):
    kind: str = "hubert"


@dataclass(frozen=True)
class Wav2Vec2Features(_CTCEncoderFeatures):
    kind: str = "wav2vec2"


@dataclass(frozen=True)
class WhisperFeatures(EncoderFeatures):
    """The Whisper encoder: its log-mel (the folder's preprocessor_config.json) of each 30-s window, encoded,
    the rows of the window's real audio kept (1500 per 30 s: 50 Hz)."""

    kind: str = "whisper"

    def hidden_states(self, audio: np.ndarray) -> np.ndarray:
        import torch

        extractor, encoder = _load(self.kind, str(Path(self.model_path).resolve()))
        window = WHISPER_SECONDS * SAMPLE_RATE
        rows = []
        for start in range(0, len(audio), window):
            chunk = audio[start : start + window]
            mel = extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            with torch.inference_mode():
                out = encoder(mel, output_hidden_states=True)
            keep = -(-len(chunk) // HOP)  # rows that hold this chunk's audio
            rows.append(out.hidden_states[self.layer][0, :keep].float().numpy())
        return np.concatenate(rows)


ENCODER_KINDS = {"hubert": HubertFeatures, "wav2vec2": Wav2Vec2Features, "whisper": WhisperFeatures}


@cache
def _load(kind: str, path: str):
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"{kind} features need the `hubert` extra: pip install -e '.[hubert]'") from error
    if kind == "whisper":
        extractor = transformers.WhisperFeatureExtractor.from_pretrained(path)
        return extractor, transformers.WhisperModel.from_pretrained(path).get_encoder().eval()
    model = {"hubert": transformers.HubertModel, "wav2vec2": transformers.Wav2Vec2Model}[kind]
    return model.from_pretrained(path).eval()


def recorded_layer(spec: dict) -> int | None:
    """The hidden-state layer a recorded ``spec`` used: its ``layer``, or -1 for the released DAWN's
    ``"output": "last_hidden_state"`` (None when it names another output)."""
    if "layer" in spec:
        return int(spec["layer"])
    return -1 if spec.get("output", "last_hidden_state") == "last_hidden_state" else None


def encoder_from_spec(spec: dict, model_path: str | None = None, setting: str = SETTING) -> EncoderFeatures:
    """The encoder for features recorded as ``spec`` (a store's or a checkpoint's): the model folder is
    ``model_path`` (the setting named ``setting``), else the folder the spec records when it still exists.
    No folder -> FileNotFoundError naming the setting and where to get the model; a folder whose model
    differs from the recorded one (kind, name, layer or width) -> ValueError naming both."""
    kind = spec.get("kind")
    recorded = Path(str(spec.get("model") or "?")).name
    wanted = f"{spec.get('model', f'a {kind} model')} ({spec.get('dim', '?')}-wide)"
    if not model_path:
        stored = spec.get("path")
        if stored and (Path(stored) / "config.json").is_file():
            model_path = stored
        else:
            moved = f"; the folder they were made with, {stored}, no longer holds the model" if stored else ""
            model = str(spec.get("model") or "")
            url = f"https://huggingface.co/{model}" if model.count("/") == 1 else EXAMPLES[kind]
            raise FileNotFoundError(
                f"these checkpoints were trained on {NAMES[kind]} features of {wanted}: set {setting}="
                f"/path/to/{recorded}, a local folder of that model (`git clone {url}`; needs the `hubert` "
                f"extra){moved}"
            )
    folder = Path(model_path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'}: missing; {setting} must be a {kind} model folder")
    layer = recorded_layer(spec)
    extractor = ENCODER_KINDS[kind](str(folder), -1 if layer is None else layer)
    model_type = extractor.config.get("model_type")
    name = recorded if recorded in (folder.name, folder.resolve().name) else folder.resolve().name
    mine = {"model": name, "layer": extractor.layer, "dim": extractor.dim}
    theirs = {"model": recorded, "layer": layer, "dim": spec.get("dim")}
    rates = (spec.get("sample_rate", SAMPLE_RATE), spec.get("fps", FPS)) == (SAMPLE_RATE, FPS)
    if mine != theirs or not rates or model_type not in (None, kind):
        raise ValueError(
            "the audio feature extractor differs from the one the checkpoints were trained with:\n"
            f"  trained with: {kind} {theirs} (recorded spec {spec})\n"
            f"  configured:   {model_type or kind} {mine} from {setting}={model_path}\n"
            f"point {setting} at the model the checkpoints were trained with (a folder named {recorded!r})"
        )
    return extractor
