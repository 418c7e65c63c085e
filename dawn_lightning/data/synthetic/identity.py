"""Per-identity appearance and voice parameters of a synthetic talking head.

Lengths are in *face units*: at pose scale 1 one face unit is half the frame width, the face centre is the
origin, x points right and y points down (image convention). Colours are RGB triples in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Colour = tuple[float, float, float]

HAIR_STYLES = ("short", "long", "side_part", "buzz")

_SKIN_TONES = np.array(
    [
        [0.98, 0.85, 0.74],
        [0.93, 0.75, 0.62],
        [0.82, 0.62, 0.47],
        [0.66, 0.46, 0.32],
        [0.46, 0.31, 0.21],
    ],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [
        [0.07, 0.05, 0.04],  # black
        [0.22, 0.13, 0.07],  # dark brown
        [0.42, 0.27, 0.13],  # brown
        [0.82, 0.66, 0.38],  # blond
        [0.58, 0.24, 0.10],  # red
        [0.62, 0.61, 0.60],  # grey
    ],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array(
    [
        [0.30, 0.18, 0.08],  # brown
        [0.14, 0.09, 0.05],  # dark brown
        [0.25, 0.45, 0.70],  # blue
        [0.30, 0.50, 0.30],  # green
        [0.45, 0.40, 0.22],  # hazel
    ],
    dtype=np.float64,
)
_LIP_RED = np.array([0.72, 0.22, 0.26])


@dataclass(frozen=True)
class Identity:
    """Appearance, voice and behaviour of one synthetic speaker (all fields plain Python values)."""

    key: int  # mixed into every clip seed so two identities never share a random stream
    face_rx: float  # face ellipse half-width (face units)
    face_ry: float  # face ellipse half-height (face units)
    jaw_taper: float  # relative narrowing of the face towards the chin, 0 = ellipse
    skin: Colour
    hair: Colour
    hair_style: str  # one of HAIR_STYLES
    hair_volume: float  # how far the hair reaches beyond the face outline (face units)
    hairline: float  # y of the front hairline at the face centre (face units, negative = up)
    eye_spacing: float  # half the distance between the eye centres (face units)
    eye_y: float  # y of the eye centres (face units)
    eye_size: float  # eye half-width (face units)
    eye_aspect: float  # eye half-height / half-width
    iris: Colour
    brow_thickness: float  # eyebrow half-height (face units)
    nose_y: float  # y of the nose tip (face units)
    nose_length: float  # nose bridge length (face units)
    nose_width: float  # nose tip half-width (face units)
    lip: Colour
    lip_thickness: float  # lip thickness around the mouth opening (face units)
    mouth_width: float  # half-width of the neutral mouth (face units)
    mouth_y: float  # y of the mouth centre (face units)
    shirt: Colour
    bg_colours: tuple[Colour, Colour]  # background colours blended by the texture pattern
    bg_waves: tuple[tuple[float, float, float, float], ...]  # (kx, ky [cycles/frame], phase, amplitude)
    bg_stripes: tuple[float, float, float]  # (angle [rad], frequency [cycles/frame], amplitude)
    f0: float  # mean speaking pitch (Hz), 90-250
    speaking_rate: float  # syllables per second
    blink_rate: float  # blinks per second, 0.2-1.0
    head_motion: float  # multiplier of the head-pose amplitudes, 0.5-1.0


def _colour(values: np.ndarray) -> Colour:
    c = np.clip(values, 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


def _random_hue_colour(rng: np.random.Generator, saturation: float, value: float) -> Colour:
    """A colour with a random hue at the given HSV saturation and value."""
    h = rng.uniform(0.0, 6.0)
    x = 1.0 - abs(h % 2.0 - 1.0)
    rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][int(h) % 6]
    return _colour(value * (1.0 - saturation + saturation * np.array(rgb, dtype=np.float64)))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one random identity; all randomness comes from ``rng``."""
    tone = rng.uniform(0.0, len(_SKIN_TONES) - 1)
    i = int(tone)
    j = min(i + 1, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[i] + (tone - i) * (_SKIN_TONES[j] - _SKIN_TONES[i])
    skin = skin * rng.uniform(0.96, 1.04, size=3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    lip = 0.55 * skin + 0.45 * _LIP_RED * rng.uniform(0.8, 1.05)
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15)

    face_ry = rng.uniform(0.50, 0.57)
    face_rx = face_ry * rng.uniform(0.74, 0.86)
    eye_size = rng.uniform(0.075, 0.092)

    bg_a = np.array(_random_hue_colour(rng, rng.uniform(0.15, 0.55), rng.uniform(0.45, 0.85)))
    bg_b = np.clip(bg_a * rng.uniform(0.6, 0.85) + rng.uniform(-0.08, 0.08, size=3), 0.0, 1.0)
    waves = tuple(
        (
            float(rng.uniform(-2.5, 2.5)),
            float(rng.uniform(-2.5, 2.5)),
            float(rng.uniform(0.0, 2.0 * np.pi)),
            float(rng.uniform(0.15, 0.45)),
        )
        for _ in range(3)
    )
    stripes = (
        float(rng.uniform(0.0, np.pi)),
        float(rng.uniform(3.0, 9.0)),
        float(rng.uniform(0.0, 0.35)),
    )

    return Identity(
        key=int(rng.integers(2**31)),
        face_rx=float(face_rx),
        face_ry=float(face_ry),
        jaw_taper=float(rng.uniform(0.08, 0.22)),
        skin=_colour(skin),
        hair=_colour(hair),
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hair_volume=float(rng.uniform(0.04, 0.10)),
        hairline=float(rng.uniform(-0.33, -0.26)),
        eye_spacing=float(rng.uniform(0.15, 0.18)),
        eye_y=float(rng.uniform(-0.09, -0.05)),
        eye_size=float(eye_size),
        eye_aspect=float(rng.uniform(0.55, 0.68)),
        iris=_colour(iris),
        brow_thickness=float(rng.uniform(0.014, 0.024)),
        nose_y=float(rng.uniform(0.11, 0.15)),
        nose_length=float(rng.uniform(0.14, 0.19)),
        nose_width=float(rng.uniform(0.040, 0.055)),
        lip=_colour(lip),
        lip_thickness=float(rng.uniform(0.030, 0.042)),
        mouth_width=float(rng.uniform(0.11, 0.14)),
        mouth_y=float(rng.uniform(0.28, 0.31)),
        shirt=_random_hue_colour(rng, rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.85)),
        bg_colours=(_colour(bg_a), _colour(bg_b)),
        bg_waves=waves,
        bg_stripes=stripes,
        f0=float(rng.uniform(90.0, 250.0)),
        speaking_rate=float(rng.uniform(3.2, 5.2)),
        blink_rate=float(rng.uniform(0.2, 1.0)),
        head_motion=float(rng.uniform(0.5, 1.0)),
    )
