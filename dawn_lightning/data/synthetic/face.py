"""Vectorised 2.5-D face renderer: anti-aliased signed-distance shapes on the pixel grid.

Every shape is defined in *face coordinates* (see ``identity``) and evaluated on the pixel grid after the
pixel centres are mapped into face coordinates by the inverse of the pose's 2-D similarity transform
(roll, scale, translation). Yaw and pitch are faked: the inner features (eyes, brows, nose, mouth) slide
horizontally/vertically inside the face outline, the outline narrows with ``cos(yaw)`` and the hair slides
the other way. The neck and shoulders follow the translation and scale only. The background is fixed in
image space.

Image coordinates are normalised: (0, 0) is the top-left corner of the frame, (1, 1) the bottom-right.
The face centre sits at ``REST_CENTRE + (tx, ty)`` and one face unit spans ``FACE_UNIT * scale`` of the
frame. Shapes are evaluated per chunk of frames and only inside a window that bounds the shape over the
chunk, so small features cost little.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dawn_lightning.data.synthetic.identity import Identity
from dawn_lightning.data.synthetic.speech import VOWELS

REST_CENTRE = (0.5, 0.46)
FACE_UNIT = 0.5
MOUTH_OPEN_HALF_HEIGHT = 0.09  # face units: half-height of the mouth opening at mouth_open = 1 for /a/
# Mouth opening width and height multipliers per vowel (order of VOWELS): wide flat /i/ /e/, round /o/ /u/.
MOUTH_WIDTH = np.array([1.0, 1.12, 1.28, 0.70, 0.56])
MOUTH_HEIGHT = np.array([1.0, 0.9, 0.8, 0.95, 0.85])
_LIP_SEAM = 0.007  # face units: half-height of the dark line between closed lips
MOUTH_INTERIOR = np.array([0.20, 0.05, 0.07], dtype=np.float32)
_TONGUE = np.array([0.62, 0.24, 0.26], dtype=np.float32)
_TEETH = np.array([0.93, 0.91, 0.86], dtype=np.float32)
EYE_WHITE = np.array([0.95, 0.94, 0.92], dtype=np.float32)
_PUPIL = np.array([0.03, 0.03, 0.04], dtype=np.float32)
_LASH = np.array([0.10, 0.07, 0.07], dtype=np.float32)
_PIXELS_PER_CHUNK = 64 * 64 * 32  # frames are rendered in chunks of about this many pixels

assert len(MOUTH_WIDTH) == len(MOUTH_HEIGHT) == len(VOWELS)


@dataclass(frozen=True)
class RenderResult:
    """Rendered frames and their ground truth; boxes are (x0, y0, x1, y1) in normalised image coordinates."""

    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    face_box: np.ndarray  # (T, 4) float32: bounding box of the face outline (skin ellipse)
    mouth_box: np.ndarray  # (T, 4) float32: bounding box of the outer lip contour
    eye_boxes: np.ndarray  # (T, 2, 4) float32: bounding boxes of the two eyes (image-left, image-right)


class _Transform:
    """Per-frame similarity transform from face coordinates to normalised image coordinates."""

    def __init__(self, cx: np.ndarray, cy: np.ndarray, unit: np.ndarray, roll: np.ndarray, size: int) -> None:
        """``cx, cy, unit, roll``: (t,) face centre, frame fraction per face unit, roll (rad)."""
        self.cx, self.cy, self.unit, self.size = cx, cy, unit, size
        self.cos, self.sin = np.cos(roll), np.sin(roll)

    def to_image(self, fx: np.ndarray, fy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates (t, ...) -> normalised image coordinates (t, ...)."""
        c, s, k, cx, cy = (
            a.reshape(a.shape + (1,) * (fx.ndim - 1))
            for a in (self.cos, self.sin, self.unit, self.cx, self.cy)
        )
        return cx + k * (c * fx - s * fy), cy + k * (s * fx + c * fy)

    def box(self, fx: np.ndarray, fy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(t, 4) image bounding box of axis-aligned face-space ellipses at (fx, fy) with semi-axes (a, b)."""
        u, v = self.to_image(fx, fy)
        hu = self.unit * np.hypot(a * self.cos, b * self.sin)
        hv = self.unit * np.hypot(a * self.sin, b * self.cos)
        return np.clip(np.stack([u - hu, v - hv, u + hu, v + hv], axis=1), 0.0, 1.0)


class _Frame(_Transform):
    """A transform plus the face coordinates of every pixel centre of one chunk of frames."""

    def __init__(
        self, cx: np.ndarray, cy: np.ndarray, unit: np.ndarray, roll: np.ndarray, size: int, grid: np.ndarray
    ) -> None:
        """``grid``: (S,) normalised pixel-centre coordinates."""
        super().__init__(cx, cy, unit, roll, size)
        du = grid[None, None, :] - cx[:, None, None]
        dv = grid[None, :, None] - cy[:, None, None]
        c, s, k = self.cos[:, None, None], self.sin[:, None, None], unit[:, None, None]
        self.x = ((c * du + s * dv) / k).astype(np.float32)  # (t, S, S)
        self.y = ((c * dv - s * du) / k).astype(np.float32)
        self.px = (1.0 / (k * size)).astype(np.float32)  # (t, 1, 1) face units per pixel

    def window(self, fx: np.ndarray, fy: np.ndarray, radius: np.ndarray) -> tuple[slice, slice] | None:
        """Pixel window holding discs of ``radius`` (t,) around (fx, fy) (t,) in every frame, or None."""
        u, v = self.to_image(np.asarray(fx, np.float64), np.asarray(fy, np.float64))
        r = radius * self.unit * self.size + 1.5
        u, v = u * self.size - 0.5, v * self.size - 0.5
        x0, x1 = max(int(np.floor((u - r).min())), 0), min(int(np.ceil((u + r).max())) + 1, self.size)
        y0, y1 = max(int(np.floor((v - r).min())), 0), min(int(np.ceil((v + r).max())) + 1, self.size)
        if x1 <= x0 or y1 <= y0:
            return None
        return slice(y0, y1), slice(x0, x1)

    def local(
        self, win: tuple[slice, slice], fx: np.ndarray, fy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates inside ``win`` relative to the per-frame point (fx, fy): two (t, h, w) arrays."""
        x = self.x[:, win[0], win[1]] - np.asarray(fx, np.float32)[:, None, None]
        y = self.y[:, win[0], win[1]] - np.asarray(fy, np.float32)[:, None, None]
        return x, y


def _col(values: np.ndarray | tuple) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _t(values: np.ndarray) -> np.ndarray:
    """(t,) -> (t, 1, 1) float32 for broadcasting against (t, h, w) pixel arrays."""
    return np.asarray(values, np.float32)[:, None, None]


def _coverage(sdf: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the inside (sdf < 0) of a shape; ``px`` is the pixel size in sdf units."""
    return np.clip(0.5 - sdf / px, 0.0, 1.0)


def _ellipse(x: np.ndarray, y: np.ndarray, a, b, px: np.ndarray) -> np.ndarray:
    """Coverage of the ellipse (x/a)^2 + (y/b)^2 <= 1; thin ellipses fade in proportion to their width."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    qx, qy = x / a, y / b
    grad = 2.0 * np.sqrt((qx / a) ** 2 + (qy / b) ** 2) + 1e-6
    alpha = _coverage((qx * qx + qy * qy - 1.0) / grad, px)
    return alpha * np.clip(2.0 * np.minimum(a, b) / px, 0.0, 1.0)


def _rounded_box(x: np.ndarray, y: np.ndarray, hw: float, hh: float, r: float, px: np.ndarray) -> np.ndarray:
    """Coverage of a box of half-sizes (hw, hh) with corner radius r."""
    qx, qy = np.abs(x) - (hw - r), np.abs(y) - (hh - r)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return _coverage(outside + np.minimum(np.maximum(qx, qy), 0.0) - r, px)


class _Painter:
    """Alpha-composites shapes into one chunk's float32 canvas (t, S, S, 3)."""

    def __init__(self, canvas: np.ndarray) -> None:
        self.canvas = canvas

    def paint(self, win: tuple[slice, slice], alpha: np.ndarray, colour: np.ndarray) -> None:
        """``alpha`` (t, h, w) over ``win``; ``colour`` (3,) or (t, h, w, 3)."""
        region = self.canvas[:, win[0], win[1]]
        region += alpha[..., None] * (colour - region)


def _background(identity: Identity, grid: np.ndarray) -> np.ndarray:
    """(S, S, 3) float32 textured background: low-frequency waves and soft stripes blending two colours."""
    u, v = grid[None, :], grid[:, None]
    pattern = np.zeros((grid.size, grid.size))
    total = 0.0
    for kx, ky, phase, amp in identity.bg_waves:
        pattern += amp * np.cos(2.0 * np.pi * (kx * u + ky * v) + phase)
        total += amp
    angle, freq, amp = identity.bg_stripes
    pattern += amp * np.tanh(2.5 * np.sin(2.0 * np.pi * freq * (u * np.cos(angle) + v * np.sin(angle))))
    total += amp
    mix = (0.5 + 0.5 * pattern / total)[..., None]
    a, b = np.array(identity.bg_colours[0]), np.array(identity.bg_colours[1])
    vignette = (1.0 - 0.25 * ((u - 0.5) ** 2 + (v - 0.5) ** 2))[..., None]
    return ((a * (1.0 - mix) + b * mix) * vignette).astype(np.float32)


def _geometry(
    ident: Identity,
    pose: np.ndarray,
    mouth_open: np.ndarray,
    vowel_weights: np.ndarray,
    eye_open: np.ndarray,
    brow_raise: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-frame positions and sizes of all parts in face coordinates; every value is (T,) or (T, 2)."""
    yaw, pitch, roll = (np.deg2rad(pose[:, i].astype(np.float64)) for i in range(3))
    scale, tx, ty = (pose[:, i].astype(np.float64) for i in range(3, 6))
    sy, sp = np.sin(yaw), np.sin(pitch)
    side = np.array([-1.0, 1.0])
    g: dict[str, np.ndarray] = {
        "cx": REST_CENTRE[0] + tx,
        "cy": REST_CENTRE[1] + ty,
        "unit": FACE_UNIT * scale,
        "roll": roll,
        "body_cx": REST_CENTRE[0] + 0.6 * tx,
        "body_cy": REST_CENTRE[1] + 0.6 * ty,
        "body_unit": FACE_UNIT * (1.0 + 0.6 * (scale - 1.0)),
        "face_a": ident.face_rx * np.sqrt(np.cos(yaw)),
        "face_b": ident.face_ry * np.sqrt(np.cos(pitch)),
        "hair_x": -0.07 * sy,
        "hairline": ident.hairline + 0.15 * sp,
        "ear_x": side[None, :] * (ident.face_rx * np.sqrt(np.cos(yaw)) - 0.015)[:, None] - 0.06 * sy[:, None],
    }
    eye_w = ident.eye_size * (1.0 - 0.35 * side[None, :] * sy[:, None])
    g["eye_x"] = side[None, :] * ident.eye_spacing * np.cos(yaw)[:, None] + 0.30 * sy[:, None]
    g["eye_y"] = np.repeat((ident.eye_y + 0.30 * sp)[:, None], 2, axis=1)
    g["eye_w"] = eye_w
    g["eye_h"] = eye_w * ident.eye_aspect
    g["eye_open"] = np.clip(eye_open.astype(np.float64), 0.0, 1.0)
    g["brow_x"] = g["eye_x"] + side[None, :] * 0.012
    g["brow_y"] = g["eye_y"] - g["eye_h"] - 0.05 - 0.03 * brow_raise[:, None]
    g["nose_x"] = 0.42 * sy
    g["nose_y"] = ident.nose_y + 0.40 * sp

    w = vowel_weights.astype(np.float64) / np.maximum(vowel_weights.sum(axis=1, keepdims=True), 1e-9)
    mo = np.clip(mouth_open.astype(np.float64), 0.0, 1.0)
    shaping = np.clip(2.0 * mo, 0.0, 1.0)
    g["mouth_x"] = 0.33 * sy
    g["mouth_y"] = ident.mouth_y + 0.32 * sp
    g["mouth_w"] = ident.mouth_width * (1.0 + (w @ MOUTH_WIDTH - 1.0) * shaping) * (0.8 + 0.2 * np.cos(yaw))
    g["mouth_h"] = MOUTH_OPEN_HALF_HEIGHT * mo * (w @ MOUTH_HEIGHT)
    g["lip"] = ident.lip_thickness * (1.0 + 0.35 * (w[:, 3] + w[:, 4]) * shaping)
    return g


def _face_outline(g: dict[str, np.ndarray], taper: float, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(T, n) face-space points on the egg-shaped face outline."""
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    y = g["face_b"][:, None] * np.sin(theta)[None, :]
    x = (
        g["face_a"][:, None]
        * np.cos(theta)[None, :]
        / (1.0 + taper * np.maximum(y, 0.0) / g["face_b"][:, None])
    )
    return x, y


def _draw_body(p: _Painter, body: _Frame, ident: Identity) -> None:
    skin, shirt = _col(ident.skin), _col(ident.shirt)
    t = body.x.shape[0]
    zero = np.zeros(t)
    win = body.window(zero, zero + 0.55, zero + 0.5)
    if win is not None:
        x, y = body.local(win, zero, zero + 0.55)
        p.paint(win, _rounded_box(x, y, 0.15, 0.35, 0.05, body.px), skin * 0.78)
    win = body.window(zero, zero + 1.1, zero + 0.95)
    if win is not None:
        x, y = body.local(win, zero, zero + 1.1)
        shade = (1.0 - 0.25 * np.clip(np.abs(x) - 0.3, 0.0, 1.0))[..., None]
        p.paint(win, _ellipse(x, y, 0.9, 0.45, body.px), shirt * shade)
    win = body.window(zero, zero + 0.66, zero + 0.2)
    if win is not None:
        x, y = body.local(win, zero, zero + 0.66)
        p.paint(win, _ellipse(x, y, 0.15, 0.07, body.px), skin * 0.72)


def _draw_hair_back(p: _Painter, f: _Frame, g: dict[str, np.ndarray], ident: Identity) -> None:
    hair = _col(ident.hair)
    hx, hy = g["hair_x"], np.full_like(g["hair_x"], -0.06)
    a = g["face_a"] + ident.hair_volume
    b = np.full_like(a, ident.face_ry * 0.95 + ident.hair_volume)
    if ident.hair_style == "long":
        cy = hy + 0.32
        win = f.window(hx, cy, np.full_like(hx, ident.face_rx + ident.hair_volume + 0.6))
        if win is not None:
            x, y = f.local(win, hx, cy)
            hw = ident.face_rx + ident.hair_volume + 0.02
            p.paint(win, _rounded_box(x, y, hw, 0.58, 0.3, f.px), hair * 0.8)
    win = f.window(hx, hy, np.maximum(a, b))
    if win is not None:
        x, y = f.local(win, hx, hy)
        alpha = _ellipse(x, y, _t(a), _t(b), f.px)
        if ident.hair_style != "long":
            alpha *= _coverage(y - _t(ident.eye_y + 0.1 - hy), f.px)
        p.paint(win, alpha, hair * 0.88)


def _draw_face(p: _Painter, f: _Frame, g: dict[str, np.ndarray], ident: Identity) -> None:
    skin = _col(ident.skin)
    for i in range(2):
        ex, ey = g["ear_x"][:, i], np.full_like(g["ear_x"][:, i], ident.eye_y + 0.07)
        win = f.window(ex, ey, np.full_like(ex, 0.1))
        if win is not None:
            x, y = f.local(win, ex, ey)
            p.paint(win, _ellipse(x, y, 0.05, 0.09, f.px), skin * 0.88)
    zero = np.zeros_like(g["face_a"])
    win = f.window(zero, zero, np.maximum(g["face_a"], g["face_b"]))
    if win is not None:
        x, y = f.local(win, zero, zero)
        a, b = _t(g["face_a"]), _t(g["face_b"])
        xw = x * (1.0 + ident.jaw_taper * np.maximum(y, 0.0) / b)
        q = (xw / a) ** 2 + (y / b) ** 2
        shade = 1.06 - 0.16 * q * q - 0.05 * x / a - 0.04 * y / b
        p.paint(win, _ellipse(xw, y, a, b, f.px), skin * shade[..., None])
        for sgn in (-1.0, 1.0):  # cheeks
            cheek = _ellipse(x - sgn * 0.55 * a, y - 0.22 * b, 0.1, 0.07, f.px) * 0.1
            p.paint(win, cheek, np.array([0.85, 0.35, 0.35], np.float32))


def _draw_fringe(p: _Painter, f: _Frame, g: dict[str, np.ndarray], ident: Identity) -> None:
    hair = _col(ident.hair)
    hx, hy = g["hair_x"], np.full_like(g["hair_x"], -0.06)
    a = g["face_a"] + ident.hair_volume
    b = np.full_like(a, ident.face_ry * 0.95 + ident.hair_volume)
    win = f.window(hx, hy, np.maximum(a, b))
    if win is None:
        return
    x, y = f.local(win, hx, hy)
    curve, tilt = {"short": (0.9, 0.0), "long": (0.7, 0.0), "side_part": (0.9, 0.25), "buzz": (1.1, 0.0)}[
        ident.hair_style
    ]
    line = _t(g["hairline"] - hy) + curve * x * x + tilt * x
    if ident.hair_style == "buzz":
        line = line - 0.04
    slope = 2.0 * curve * x + tilt
    alpha = _ellipse(x, y, _t(a), _t(b), f.px) * _coverage((y - line) / np.sqrt(1.0 + slope * slope), f.px)
    shade = (0.9 + 0.2 * np.clip(-(y + _t(hy)) / _t(b), 0.0, 1.0) - 0.1 * np.clip(x / _t(a), -1, 1))[
        ..., None
    ]
    p.paint(win, alpha, hair * shade)


def _draw_eyes(p: _Painter, f: _Frame, g: dict[str, np.ndarray], ident: Identity) -> None:
    skin, brow, iris = _col(ident.skin), _col(ident.hair) * 0.7, _col(ident.iris)
    for i in range(2):
        sgn = -1.0 if i == 0 else 1.0
        bx, by = g["brow_x"][:, i], g["brow_y"][:, i]
        win = f.window(bx, by, g["eye_w"][:, i] * 1.4)
        if win is not None:
            x, y = f.local(win, bx, by)
            angle = -sgn * 0.1
            xr = x * np.cos(angle) + y * np.sin(angle)
            yr = y * np.cos(angle) - x * np.sin(angle)
            arch = yr - 3.0 * xr * xr
            a = _t(g["eye_w"][:, i] * 1.25)
            p.paint(win, _ellipse(xr, arch, a, ident.brow_thickness, f.px), brow)

        ex, ey = g["eye_x"][:, i], g["eye_y"][:, i]
        ew, eh, op = _t(g["eye_w"][:, i]), _t(g["eye_h"][:, i]), _t(g["eye_open"][:, i])
        win = f.window(ex, ey, g["eye_w"][:, i] * 1.3)
        if win is None:
            continue
        x, y = f.local(win, ex, ey)
        upper = -eh + (1.0 - op) * 1.55 * eh
        lower = eh - (1.0 - op) * 0.45 * eh
        eye = _ellipse(x, y, ew, eh, f.px)
        p.paint(win, eye * _coverage(y - upper, f.px), skin * 0.86)
        visible = eye * _coverage(upper - y, f.px) * _coverage(y - lower, f.px)
        p.paint(win, visible, EYE_WHITE)
        r = 0.85 * eh
        p.paint(win, visible * _ellipse(x, y - 0.1 * eh, r, r, f.px), iris)
        p.paint(win, visible * _ellipse(x, y - 0.1 * eh, 0.45 * r, 0.45 * r, f.px), _PUPIL)
        p.paint(win, visible * _ellipse(x + 0.35 * r, y + 0.35 * r, 0.18 * r, 0.18 * r, f.px), EYE_WHITE)
        lash = np.maximum(0.14 * eh, 0.5 * f.px)
        rim = _ellipse(x, y, ew * 1.1, eh * 1.35, f.px)
        p.paint(win, rim * _coverage(np.abs(y - upper) - lash, f.px) * np.clip(2 * lash / f.px, 0, 1), _LASH)


def _draw_nose(p: _Painter, f: _Frame, g: dict[str, np.ndarray], ident: Identity) -> None:
    skin = _col(ident.skin)
    nx, ny, nw = g["nose_x"], g["nose_y"], ident.nose_width
    win = f.window(nx, ny - 0.5 * ident.nose_length, np.full_like(nx, ident.nose_length + nw))
    if win is None:
        return
    x, y = f.local(win, nx, ny)
    p.paint(
        win,
        _ellipse(x - 0.3 * nw, y + 0.5 * ident.nose_length, 0.35 * nw, 0.5 * ident.nose_length, f.px) * 0.5,
        skin * 0.8,
    )
    p.paint(win, _ellipse(x, y - 0.45 * nw, nw, 0.65 * nw, f.px) * 0.5, skin * 1.06)
    p.paint(win, _ellipse(x, y - 0.1 * nw, nw * 1.05, 0.45 * nw, f.px) * 0.6, skin * 0.74)
    for sgn in (-1.0, 1.0):
        p.paint(win, _ellipse(x - sgn * 0.5 * nw, y, 0.32 * nw, 0.2 * nw, f.px), skin * 0.42)


def _draw_mouth(p: _Painter, f: _Frame, g: dict[str, np.ndarray], ident: Identity) -> None:
    lip = _col(ident.lip)
    mx, my = g["mouth_x"], g["mouth_y"]
    win = f.window(mx, my, g["mouth_w"] + g["lip"] + MOUTH_OPEN_HALF_HEIGHT)
    if win is None:
        return
    x, y = f.local(win, mx, my)
    w, h, lt = _t(g["mouth_w"]), _t(g["mouth_h"]), _t(g["lip"])
    outer = _ellipse(x, y, w + 0.3 * lt, h + lt, f.px)
    p.paint(win, outer, lip * (0.9 + 0.1 * np.tanh(y / lt))[..., None])
    inner_b = h + _LIP_SEAM
    inner = _ellipse(x, y, 0.92 * w, inner_b, f.px)
    p.paint(win, inner, MOUTH_INTERIOR)
    p.paint(win, inner * _coverage(y - (-inner_b + 0.5 * h), f.px), _TEETH)
    p.paint(win, inner * _ellipse(x, y - inner_b, 0.6 * w, 0.5 * h + 1e-4, f.px), _TONGUE)


def render_frames(
    identity: Identity,
    pose: np.ndarray,
    mouth_open: np.ndarray,
    vowel_weights: np.ndarray,
    eye_open: np.ndarray,
    size: int,
    brow_raise: np.ndarray | None = None,
) -> RenderResult:
    """Render T frames of ``size`` x ``size`` pixels.

    Args:
        identity: appearance of the head.
        pose: (T, 6) ``[yaw_deg, pitch_deg, roll_deg, scale, tx, ty]`` (see ``motion``).
        mouth_open: (T,) mouth opening in [0, 1].
        vowel_weights: (T, 5) non-negative weights over VOWELS setting the mouth shape.
        eye_open: (T, 2) eye openness in [0, 1], 1 = open (image-left eye, image-right eye).
        size: frame width and height in pixels.
        brow_raise: optional (T,) eyebrow raise in [0, 1].
    """
    num = pose.shape[0]
    raise_ = np.zeros(num) if brow_raise is None else np.clip(brow_raise.astype(np.float64), 0.0, 1.0)
    g = _geometry(identity, pose, mouth_open, vowel_weights, eye_open, raise_)
    grid = (np.arange(size) + 0.5) / size
    background = _background(identity, grid)
    frames = np.empty((num, size, size, 3), dtype=np.uint8)
    chunk = max(1, _PIXELS_PER_CHUNK // (size * size))
    parts: list[Callable[[_Painter, _Frame, dict[str, np.ndarray], Identity], None]] = [
        _draw_hair_back,
        _draw_face,
        _draw_fringe,
        _draw_eyes,
        _draw_nose,
        _draw_mouth,
    ]
    for start in range(0, num, chunk):
        sl = slice(start, min(start + chunk, num))
        gc = {k: v[sl] for k, v in g.items()}
        canvas = np.repeat(background[None], sl.stop - sl.start, axis=0)
        painter = _Painter(canvas)
        body = _Frame(gc["body_cx"], gc["body_cy"], gc["body_unit"], np.zeros_like(gc["roll"]), size, grid)
        _draw_body(painter, body, identity)
        face = _Frame(gc["cx"], gc["cy"], gc["unit"], gc["roll"], size, grid)
        for draw in parts:
            draw(painter, face, gc, identity)
        frames[sl] = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    full = _Transform(g["cx"], g["cy"], g["unit"], g["roll"], size)
    ox, oy = _face_outline(g, identity.jaw_taper)
    u, v = full.to_image(ox, oy)
    face_box = np.clip(np.stack([u.min(1), v.min(1), u.max(1), v.max(1)], axis=1), 0.0, 1.0)
    eye_boxes = np.stack(
        [full.box(g["eye_x"][:, i], g["eye_y"][:, i], g["eye_w"][:, i], g["eye_h"][:, i]) for i in range(2)],
        axis=1,
    )
    mouth_box = full.box(g["mouth_x"], g["mouth_y"], g["mouth_w"] + 0.3 * g["lip"], g["mouth_h"] + g["lip"])
    return RenderResult(
        frames=frames,
        face_box=face_box.astype(np.float32),
        mouth_box=mouth_box.astype(np.float32),
        eye_boxes=eye_boxes.astype(np.float32),
    )
