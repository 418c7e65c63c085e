"""Speech-like audio: a glottal source shaped by vowel formants, syllable envelopes and consonant noise.

The amplitude envelope is designed first; the waveform's short-time RMS follows it, and the same envelope
is returned per video frame as the mouth-opening target, so the mouth in the rendered video follows the
sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import signal
from scipy.ndimage import uniform_filter1d

from dawn_lightning import SAMPLE_RATE, SAMPLES_PER_FRAME

VOWELS = ("a", "e", "i", "o", "u")
# Textbook adult-male formants F1, F2, F3 (Hz) after Peterson & Barney, in the order of VOWELS.
_FORMANTS = np.array(
    [
        [730.0, 1090.0, 2440.0],  # /a/
        [530.0, 1840.0, 2480.0],  # /e/
        [270.0, 2290.0, 3010.0],  # /i/
        [570.0, 840.0, 2410.0],  # /o/
        [300.0, 870.0, 2240.0],  # /u/
    ]
)
_BANDWIDTHS = np.array([80.0, 100.0, 140.0])
# Intrinsic intensity of each vowel: open vowels are louder (and the mouth opens wider for them).
_VOWEL_LOUDNESS = np.array([1.0, 0.9, 0.78, 0.9, 0.78])
_VOWEL_PROB = np.array([0.28, 0.22, 0.2, 0.18, 0.12])
# Consonant onsets: (pass band Hz, duration range s, level relative to the syllable peak).
_CONSONANTS = {
    "p": ((1500.0, 7000.0), (0.012, 0.025), 0.35),
    "s": ((4000.0, 7500.0), (0.06, 0.11), 0.22),
    "sh": ((1800.0, 4500.0), (0.06, 0.10), 0.25),
    "f": ((1000.0, 7000.0), (0.05, 0.09), 0.12),
    "h": ((500.0, 3000.0), (0.04, 0.07), 0.10),
}
_NOISE_FLOOR = 0.002  # background noise RMS relative to a full-scale vowel
_PEAK = 0.89  # output peak amplitude


@dataclass(frozen=True)
class Speech:
    """One utterance and its per-frame (25 fps) articulation tracks, T = number of video frames."""

    audio: np.ndarray  # (T*640,) float32 in [-1, 1]
    mouth_open: np.ndarray  # (T,) float32 in [0, 1]: RMS of the designed amplitude envelope per frame
    vowel_weights: np.ndarray  # (T, 5) float32, rows sum to 1, columns ordered as VOWELS
    stress: np.ndarray  # (T,) float32 in [0, 1]: prominence at the frame of each stressed syllable onset


@dataclass(frozen=True)
class _Syllable:
    start: float  # s
    duration: float  # s
    vowel: int  # index into VOWELS
    amplitude: float  # envelope peak in (0, 1]
    stressed: bool
    consonant: str | None  # key of _CONSONANTS or None
    consonant_duration: float  # s


def _schedule(
    rng: np.random.Generator, duration: float, rate: float
) -> tuple[list[_Syllable], list[tuple[float, float]]]:
    """Phrases of words of syllables until ``duration`` seconds; returns syllables and phrase spans (s)."""
    syllables: list[_Syllable] = []
    phrases: list[tuple[float, float]] = []
    t = rng.uniform(0.1, 0.5)
    while t < duration:
        phrase_start = t
        for _ in range(int(rng.integers(2, 7))):
            n_syl = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
            accent = int(rng.integers(n_syl))
            prominent = rng.random() < 0.6
            for k in range(n_syl):
                stressed = k == accent and prominent
                d = rng.uniform(0.75, 1.25) / rate * (1.3 if stressed else 1.0)
                vowel = int(rng.choice(len(VOWELS), p=_VOWEL_PROB))
                amp = rng.uniform(0.85, 1.0) if stressed else rng.uniform(0.45, 0.72)
                consonant = None
                c_dur = 0.0
                if rng.random() < 0.6:
                    consonant = list(_CONSONANTS)[int(rng.integers(len(_CONSONANTS)))]
                    lo, hi = _CONSONANTS[consonant][1]
                    c_dur = min(rng.uniform(lo, hi), 0.35 * d)
                syllables.append(
                    _Syllable(t, d, vowel, amp * _VOWEL_LOUDNESS[vowel], stressed, consonant, c_dur)
                )
                t += d
            t += rng.uniform(0.0, 0.08)
        phrases.append((phrase_start, t))
        t += rng.uniform(0.25, 0.7)
    return syllables, phrases


def _raised_cosine(x: np.ndarray) -> np.ndarray:
    """0 -> 1 smooth ramp for x in [0, 1] (clipped outside)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _envelope(syllables: list[_Syllable], rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) amplitude envelope: per syllable attack, slowly falling sustain, decay; maximum of overlaps."""
    env = np.zeros(n, dtype=np.float64)
    for syl in syllables:
        v_start = syl.start + syl.consonant_duration
        v_dur = syl.duration - syl.consonant_duration
        attack = min(rng.uniform(0.025, 0.05), 0.4 * v_dur)
        decay = min(rng.uniform(0.05, 0.10), 0.45 * v_dur)
        i0 = int(v_start * SAMPLE_RATE)
        i1 = min(int((v_start + v_dur) * SAMPLE_RATE), n)
        if i1 <= i0:
            continue
        t = np.arange(i1 - i0) / SAMPLE_RATE
        shape = _raised_cosine(t / attack) * _raised_cosine((v_dur - t) / decay) * (1.0 - 0.15 * t / v_dur)
        np.maximum(env[i0:i1], syl.amplitude * shape, out=env[i0:i1])
    return env


def _pitch(
    syllables: list[_Syllable],
    phrases: list[tuple[float, float]],
    rng: np.random.Generator,
    n: int,
    f0: float,
) -> np.ndarray:
    """(n,) fundamental frequency in Hz: phrase declination, stress bumps, slow drift and jitter."""
    t = np.arange(n) / SAMPLE_RATE
    semitones = np.zeros(n, dtype=np.float64)
    for start, end in phrases:
        i0, i1 = int(start * SAMPLE_RATE), min(int(end * SAMPLE_RATE), n)
        if i1 > i0:
            top = rng.uniform(1.0, 2.5)
            semitones[i0:i1] = np.linspace(top, -top, i1 - i0)
    for syl in syllables:
        if not syl.stressed:
            continue
        centre = syl.start + 0.5 * syl.duration
        i0, i1 = int(syl.start * SAMPLE_RATE), min(int((syl.start + syl.duration) * SAMPLE_RATE), n)
        if i1 > i0:
            bump = np.exp(-0.5 * ((t[i0:i1] - centre) / (0.3 * syl.duration)) ** 2)
            semitones[i0:i1] += rng.uniform(2.0, 4.0) * bump
    drift_freq = rng.uniform(0.1, 0.4)
    semitones += rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * drift_freq * t + rng.uniform(0, 2 * np.pi))
    jitter = uniform_filter1d(rng.standard_normal(n), size=SAMPLE_RATE // 40)
    semitones += 0.25 * jitter / (jitter.std() + 1e-9)
    return f0 * 2.0 ** (semitones / 12.0)


def _glottal_source(freq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) radiated glottal source: derivative of a Rosenberg pulse train plus a little aspiration."""
    phase = np.cumsum(freq / SAMPLE_RATE) % 1.0
    rise, fall = 0.4, 0.16
    flow = np.where(
        phase < rise,
        0.5 - 0.5 * np.cos(np.pi * phase / rise),
        np.where(phase < rise + fall, np.cos(0.5 * np.pi * (phase - rise) / fall), 0.0),
    )
    flow += 0.04 * flow * rng.standard_normal(flow.shape)
    return np.diff(flow, prepend=0.0)


@cache
def _vowel_sos(vowel: int, formant_scale: float) -> np.ndarray:
    """(3, 6) second-order sections: cascade of unity-DC-gain formant resonators for one vowel."""
    sos = np.zeros((3, 6))
    for k, (freq, bw) in enumerate(zip(_FORMANTS[vowel] * formant_scale, _BANDWIDTHS, strict=True)):
        r = np.exp(-np.pi * bw / SAMPLE_RATE)
        a1 = -2.0 * r * np.cos(2.0 * np.pi * freq / SAMPLE_RATE)
        a2 = r * r
        sos[k] = [1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2]
    return sos


@cache
def _band_sos(kind: str) -> np.ndarray:
    """Band-pass filter (second-order sections) for one consonant noise kind."""
    return signal.butter(2, _CONSONANTS[kind][0], btype="bandpass", fs=SAMPLE_RATE, output="sos")


def _consonants(syllables: list[_Syllable], rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) band-limited noise bursts placed just before the vowel of each syllable that has a consonant."""
    out = np.zeros(n, dtype=np.float64)
    for syl in syllables:
        if syl.consonant is None:
            continue
        i0 = int(syl.start * SAMPLE_RATE)
        m = min(int(syl.consonant_duration * SAMPLE_RATE), n - i0)
        if m <= 8:
            continue
        noise = signal.sosfilt(_band_sos(syl.consonant), rng.standard_normal(m))
        noise /= np.sqrt(np.mean(noise**2)) + 1e-9
        x = np.linspace(0.0, 1.0, m)
        if syl.consonant == "p":
            shape = np.exp(-5.0 * x)
        else:
            shape = _raised_cosine(x / 0.3) * _raised_cosine((1.0 - x) / 0.3)
        out[i0 : i0 + m] += _CONSONANTS[syl.consonant][2] * syl.amplitude * shape * noise
    return out


def synthesize_speech(rng: np.random.Generator, num_frames: int, f0: float, speaking_rate: float) -> Speech:
    """Synthesize ``num_frames`` video frames' worth of speech (``num_frames * 640`` samples at 16 kHz).

    ``f0`` is the speaker's mean pitch in Hz and ``speaking_rate`` its syllables per second.
    """
    n = num_frames * SAMPLES_PER_FRAME
    syllables, phrases = _schedule(rng, n / SAMPLE_RATE, speaking_rate)
    env = _envelope(syllables, rng, n)

    starts = np.array([int(syl.start * SAMPLE_RATE) for syl in syllables])
    vowels = np.array([syl.vowel for syl in syllables])
    vowel_id = vowels[np.clip(np.searchsorted(starts, np.arange(n), side="right") - 1, 0, None)]
    weights = uniform_filter1d(np.eye(len(VOWELS))[vowel_id], size=int(0.04 * SAMPLE_RATE), axis=0)

    source = _glottal_source(_pitch(syllables, phrases, rng, n, f0), rng)
    formant_scale = round(1.0 + 0.17 * (f0 - 90.0) / 160.0, 3)
    voiced = np.zeros(n, dtype=np.float64)
    for v in range(len(VOWELS)):
        voiced += weights[:, v] * signal.sosfilt(_vowel_sos(v, formant_scale), source)
    # Normalise the short-time RMS to 1 so that the designed envelope alone sets the loudness.
    local_rms = np.sqrt(uniform_filter1d(voiced**2, size=int(0.03 * SAMPLE_RATE)))
    voiced *= env / (local_rms + 1e-4 * local_rms.max())

    audio = voiced + _consonants(syllables, rng, n) + _NOISE_FLOOR * rng.standard_normal(n)
    audio *= _PEAK / max(np.abs(audio).max(), 1e-9)

    frames_env = env.reshape(num_frames, SAMPLES_PER_FRAME)
    mouth_open = np.clip(np.sqrt(np.mean(frames_env**2, axis=1)), 0.0, 1.0)
    vowel_weights = weights.reshape(num_frames, SAMPLES_PER_FRAME, len(VOWELS)).mean(axis=1)
    vowel_weights /= vowel_weights.sum(axis=1, keepdims=True)
    stress = np.zeros(num_frames, dtype=np.float64)
    for syl in syllables:
        frame = int((syl.start + syl.consonant_duration) * SAMPLE_RATE) // SAMPLES_PER_FRAME
        if syl.stressed and frame < num_frames:
            stress[frame] = max(stress[frame], syl.amplitude)
    return Speech(
        audio=audio.astype(np.float32),
        mouth_open=mouth_open.astype(np.float32),
        vowel_weights=vowel_weights.astype(np.float32),
        stress=stress.astype(np.float32),
    )
