"""Per-frame audio features at exactly 25 frames/s, aligned 1:1 with video frames.

Feature frame t summarises the audio of video frame t: a window centred on the middle of samples
[640 t, 640 (t + 1)). The extractor's ``spec`` is recorded in the clip store, and later in checkpoints, so a
model is always fed the features it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dawn_lightning import SAMPLE_RATE, SAMPLES_PER_FRAME
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


def features_from_spec(
    spec: dict, hubert_path: str | None = None, setting: str = "audio_features.hubert_path"
):
    """The extractor that produced features of a recorded ``spec`` (a store's or a checkpoint's), rebuilt so a
    model is fed the features it was trained on.

    HuBERT (what the released DAWN weights were trained on) reads its model from ``hubert_path`` (the setting
    named ``setting``), else from the folder the spec records if it still exists: see
    `dawn_lightning.data.hubert.hubert_from_spec`. Raises FileNotFoundError when the HuBERT folder is not
    given, ValueError for a kind this version cannot compute, a ``hubert_path`` with features of another
    kind, or a spec that the rebuilt extractor does not reproduce."""
    from dataclasses import fields

    kind = spec.get("kind")
    if kind == "hubert":
        from dawn_lightning.data.hubert import hubert_from_spec

        return hubert_from_spec(spec, hubert_path, setting)
    if hubert_path:
        raise ValueError(
            f"{setting}={hubert_path} is set, but the checkpoints were trained on {kind!r} audio features "
            f"({spec}), not HuBERT: unset {setting}"
        )
    if kind not in FEATURE_KINDS:
        raise ValueError(
            f"audio features of kind {kind!r} are not supported by this version (supported: "
            f"{', '.join(FEATURE_KINDS)}); the spec is {spec}"
        )
    cls = FEATURE_KINDS[kind]
    extractor = cls(**{f.name: spec[f.name] for f in fields(cls) if f.name in spec})
    if extractor.spec != spec:
        raise ValueError(
            f"audio feature spec {spec} cannot be reproduced (this version gives {extractor.spec})"
        )
    return extractor
