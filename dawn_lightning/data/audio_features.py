"""Per-frame audio features at exactly 25 frames/s, aligned 1:1 with video frames.

Feature frame t summarises the audio of video frame t: a window centred on the middle of samples
[640 t, 640 (t + 1)). The extractor's ``spec`` is recorded in the clip store, and later in checkpoints, so a
model is always fed the features it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from dawn_lightning import SAMPLE_RATE, SAMPLES_PER_FRAME
from dawn_lightning.data.speech_encoders import ENCODER_KINDS, encoder_from_spec
from dawn_lightning.tensors.frames import fit_length


@dataclass(frozen=True)
class LogMelFeatures:
    """Log-mel spectrogram from librosa: no weights, the default feature of the project.

    80 ms Hann windows (n_fft 1280) with hop 640 at 16 kHz give exactly one feature frame per video frame.
    """

    n_mels: int = 80
    n_fft: int = 1280
    fmin: float = 55.0
    fmax: float = 7600.0
    floor: float = 1e-5
    kind: str = "logmel"

    @property
    def dim(self) -> int:
        return self.n_mels

    @property
    def spec(self) -> dict:
        return asdict(self) | {"dim": self.dim, "sample_rate": SAMPLE_RATE, "hop": SAMPLES_PER_FRAME}

    def __call__(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """Features (num_frames, n_mels) float32 of 16 kHz mono ``audio`` (N,) float in [-1, 1]."""
        import librosa

        audio = fit_length(np.asarray(audio, dtype=np.float32), num_frames)
        half = (self.n_fft - SAMPLES_PER_FRAME) // 2  # centres window t on the middle of video frame t
        padded = np.pad(audio, (half, self.n_fft - SAMPLES_PER_FRAME - half))
        mel = librosa.feature.melspectrogram(
            y=padded,
            sr=SAMPLE_RATE,
            n_fft=self.n_fft,
            hop_length=SAMPLES_PER_FRAME,
            center=False,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
        )
        features = np.log(mel + self.floor).T.astype(np.float32)
        assert len(features) == num_frames, (len(features), num_frames)
        return features


FEATURE_KINDS = {"logmel": LogMelFeatures}


def features_from_spec(spec: dict, model_path: str | None = None, setting: str = "audio_features.model_path"):
    """The extractor that produced features of a recorded ``spec`` (a store's or a checkpoint's), rebuilt so a
    model is fed the features it was trained on.

    A pretrained speech encoder (HuBERT, what the released DAWN weights were trained on; wav2vec 2.0; Whisper)
    reads its model from ``model_path`` (the setting named ``setting``), else from the folder the spec
    records if it still exists: see `dawn_lightning.data.speech_encoders.encoder_from_spec`. Raises
    FileNotFoundError when that folder is not given, ValueError for a kind this version cannot compute, a
    ``model_path`` given for features that need none, or a spec the rebuilt extractor does not reproduce."""
    kind = spec.get("kind")
    if kind in ENCODER_KINDS:
        return encoder_from_spec(spec, model_path, setting)
    if model_path:
        raise ValueError(
            f"{setting}={model_path} is set, but the checkpoints were trained on {kind!r} audio features "
            f"({spec}), which need no model: unset {setting}"
        )
    if kind not in FEATURE_KINDS:
        raise ValueError(
            f"audio features of kind {kind!r} are not supported by this version (supported: "
            f"{', '.join([*FEATURE_KINDS, *ENCODER_KINDS])}); the spec is {spec}"
        )
    cls = FEATURE_KINDS[kind]
    extractor = cls(**{f.name: spec[f.name] for f in fields(cls) if f.name in spec})
    if extractor.spec != spec:
        raise ValueError(
            f"audio feature spec {spec} cannot be reproduced (this version gives {extractor.spec})"
        )
    return extractor
