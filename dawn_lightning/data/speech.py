"""Loading the driving speech of inference: any file FFmpeg decodes (wav, mp3, flac, m4a, ogg, the audio
track of a video), any sample rate and channel count -> 16 kHz mono float32, checked for being usable.

Decoding goes through PyAV; channels are averaged and the rate converted with ``librosa.resample`` (soxr).
Every error is a `SpeechError` (a ValueError) or FileNotFoundError whose message names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dawn_lightning import SAMPLE_RATE, SAMPLES_PER_FRAME

MIN_PEAK = 1e-4  # below this peak amplitude (about -80 dBFS) the audio counts as silent


class SpeechError(ValueError):
    """Audio that cannot drive a video: undecodable, empty, silent or shorter than one frame."""


def decode_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """All samples of the first audio stream of ``path``: float32 (channels, N) and the sample rate."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise SpeechError(f"{path}: no audio stream in this file")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp")  # planar float, the stream's own layout and rate
            chunks, rate = [], stream.rate
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray())
                    rate = converted.sample_rate
            chunks.extend(converted.to_ndarray() for converted in resampler.resample(None))
    except SpeechError:
        raise
    except Exception as error:  # PyAV raises FFmpeg errors of many classes for unreadable input
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpeechError(f"{path}: cannot decode audio, unsupported or damaged file ({reason})") from None
    if not chunks:
        return np.zeros((1, 0), np.float32), int(rate or SAMPLE_RATE)
    return np.concatenate(chunks, axis=-1).astype(np.float32), int(rate)


def to_mono_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(channels, N) or (N,) float audio at ``sample_rate`` -> (M,) float32 mono at 16 kHz."""
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    if sample_rate != SAMPLE_RATE and len(mono):
        import librosa

        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_speech(audio: np.ndarray, name: str) -> np.ndarray:
    """``audio`` (N,) at 16 kHz if it can drive a video, else a `SpeechError` naming ``name``."""
    if audio.ndim != 1:
        raise SpeechError(f"{name}: expected mono audio (N,), got shape {audio.shape}")
    if len(audio) == 0:
        raise SpeechError(f"{name}: the audio is empty (no samples)")
    if not np.isfinite(audio).all():
        raise SpeechError(f"{name}: the audio has non-finite samples (NaN or inf)")
    if len(audio) < SAMPLES_PER_FRAME:
        raise SpeechError(
            f"{name}: the audio is {len(audio) / SAMPLE_RATE * 1000:.1f} ms long, shorter than one video "
            f"frame ({SAMPLES_PER_FRAME} samples at {SAMPLE_RATE} Hz = 40 ms)"
        )
    peak = float(np.abs(audio).max())
    if peak < MIN_PEAK:
        raise SpeechError(f"{name}: the audio is silent (peak amplitude {peak:.2g} < {MIN_PEAK:g})")
    return audio


def load_speech(source: str | os.PathLike | np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech as 16 kHz mono float32 (N,), checked by `check_speech`.

    source: a path to any audio (or video) file FFmpeg decodes, or samples (an array or tensor): (N,) mono,
        or (channels, N), at ``sample_rate`` (16 kHz unless told otherwise).
    """
    if isinstance(source, str | os.PathLike):
        audio, rate = decode_audio(source)
        name = str(source)
    else:
        samples = source.detach().float().cpu().numpy() if hasattr(source, "detach") else source
        audio = np.asarray(samples, dtype=np.float32)
        rate, name = sample_rate, "the audio array"
        if audio.ndim not in (1, 2):
            raise SpeechError(f"{name}: expected (N,) or (channels, N) samples, got shape {audio.shape}")
    return check_speech(to_mono_16k(audio, rate), name)
