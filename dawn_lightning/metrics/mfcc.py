"""MFCC exactly as ``python_speech_features.mfcc`` computes them with its defaults (the features SyncNet was
trained on): 13 coefficients at 100 Hz from 25 ms rectangular frames of 16 kHz audio, pre-emphasis 0.97,
26 mel filters over a 512-point FFT, log, orthonormal DCT-II, lifter 22, c0 replaced by the log frame energy.

SyncNet reads int16 wav samples, so float audio in [-1, 1] is scaled by 32768 first (``int16_scale``); it
changes only c0. 640 samples a video frame give 4 MFCC frames a video frame (4T - 1 for T frames).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.fft import dct

RATE, WINDOW, STEP, NFFT, FILTERS, COEFFICIENTS, LIFTER = 16_000, 400, 160, 512, 26, 13, 22


@cache
def mel_filterbank(num_filters: int = FILTERS, nfft: int = NFFT, rate: int = RATE) -> np.ndarray:
    """Triangular filters (num_filters, nfft // 2 + 1) between 0 Hz and rate / 2."""
    mel = np.linspace(0, 2595 * np.log10(1 + rate / 2 / 700), num_filters + 2)
    bins = np.floor((nfft + 1) * 700 * (10 ** (mel / 2595) - 1) / rate)
    bank = np.zeros((num_filters, nfft // 2 + 1))
    for j in range(num_filters):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return bank


def mfcc(audio: np.ndarray, int16_scale: bool = True) -> np.ndarray:
    """16 kHz mono audio (N,) float in [-1, 1] -> MFCC (13, M), M = 1 + ceil((N - 400) / 160)."""
    signal = np.asarray(audio, dtype=np.float64) * (32768 if int16_scale else 1)
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    count = 1 if len(signal) <= WINDOW else 1 + int(np.ceil((len(signal) - WINDOW) / STEP))
    signal = np.concatenate([signal, np.zeros((count - 1) * STEP + WINDOW - len(signal))])
    frames = signal[np.arange(count)[:, None] * STEP + np.arange(WINDOW)[None]]
    power = np.abs(np.fft.rfft(frames, NFFT)) ** 2 / NFFT
    energy = power.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    bands = power @ mel_filterbank().T
    bands = np.where(bands == 0, np.finfo(float).eps, bands)
    cepstra = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :COEFFICIENTS]
    cepstra *= 1 + (LIFTER / 2) * np.sin(np.pi * np.arange(COEFFICIENTS) / LIFTER)
    cepstra[:, 0] = np.log(energy)
    return cepstra.T.astype(np.float32)
