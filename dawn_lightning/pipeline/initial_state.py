"""The portrait's initial state (face box, head pose, blink): measured by a face backend, or the training
data's mean."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortraitState:
    """The portrait's face box (4,) [x0, y0, x1, y1] in [0, 1], head pose (6,) and blink (2,), in the units
    of the training store."""

    face_box: torch.Tensor
    pose: torch.Tensor
    blink: torch.Tensor


class InitialStateEstimator(Protocol):
    """Measures a portrait (3, S, S) in [0, 1]: where a face backend plugs in. An estimator with an int
    attribute ``resolution`` gets the portrait square at max(resolution, the model's frame size) instead of at
    the frame size."""

    def __call__(self, portrait: torch.Tensor) -> PortraitState: ...


class MeanInitialState:
    """The initial state without a face backend: the training data's mean face box, pose and blink (a
    normalised stage-2 state of zero), announced by one warning."""

    def __init__(self, face_box: torch.Tensor, pose: torch.Tensor, blink: torch.Tensor):
        self.state = PortraitState(face_box.float(), pose.float(), blink.float())
        self._warned = False

    def __call__(self, portrait: torch.Tensor) -> PortraitState:
        if not self._warned:
            log.warning(
                "no face backend (set face.model_path to measure the portrait): the portrait is assumed to "
                "show the training data's mean face box %s, pose and blink (align the face like the training "
                "frames for best results)",
                [round(float(v), 3) for v in self.state.face_box],
            )
            self._warned = True
        return self.state


class FaceInitialState:
    """The portrait's face box, pose and blink measured by a face backend (e.g. MediaPipe, from
    `dawn_lightning.data.preprocess.face`) in the conventions preprocessing writes into the store
    (`portrait_state`). ``keep``: a pose and blink to use instead of the measured ones (checkpoints whose
    state units are not the backend's, e.g. imported DAWN weights); the face box is measured either way. No
    face: `NoFaceError`."""

    resolution = 256  # the square the backend sees (the face landmarker works on 192-256 px faces)

    def __init__(self, backend, keep: PortraitState | None = None):
        self.backend, self.keep = backend, keep

    def __call__(self, portrait: torch.Tensor) -> PortraitState:
        from dawn_lightning.data.preprocess.portrait_state import measure_portrait

        image = (portrait.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        face = measure_portrait(self.backend, image.permute(1, 2, 0).cpu().numpy())
        state = PortraitState(*(torch.from_numpy(v) for v in (face.face_box, face.pose, face.blink)))
        if self.keep is not None:
            state = PortraitState(state.face_box, self.keep.pose, self.keep.blink)
        log.info(
            "portrait measured by the face backend: face box %s, pose %s, blink %s",
            *([round(float(v), 3) for v in x] for x in (state.face_box, state.pose, state.blink)),
        )
        return state


def face_backend_from_config(face: Mapping | None):
    """The face backend of the generate config's ``face`` settings, or None when ``model_path`` is unset
    (conf/generate.yaml defaults it to the env var DAWN_FACE_MODEL; ``face.model_path=null`` turns it off)."""
    from dawn_lightning.data.preprocess.face import make_backend

    face = dict(face or {})
    model_path = face.get("model_path")
    if not model_path:
        return None
    return make_backend(
        face.get("backend") or "mediapipe",
        model_path,
        face.get("min_confidence", 0.5),
        face.get("verbose", False),
    )
