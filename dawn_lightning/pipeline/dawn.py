"""Inference: a portrait and a speech recording -> a talking-head video, with the three trained stages.

    pipeline = DawnPipeline.from_checkpoints("stage1.ckpt", "stage2.ckpt", "stage3.ckpt", device="cuda")
    video = pipeline("face.png", "speech.wav", seed=0)
    video.save("talk.mp4")

Order: speech -> per-frame audio features (T = N // 640 frames at 25 fps; the audio is cut or padded to
T * 640 samples so video and sound match to the frame) -> the portrait's initial state (face box, pose,
blink) -> stage 2 generates pose and blink for all T frames at once (or they come from a file) -> stage 3
samples the motion of all T frames at once, conditioned on the portrait's z_src and face box, the audio and
the pose/blink deltas from the initial state -> the stage-1 decoder renders the frames in batches.

One seed drives both generative stages: the same seed gives the same frames. With ``max_frames`` set, a
longer input is an error (``on_too_long="error"``) or is generated in consecutive chunks of at most
``max_frames`` (``"chunk"``): stage 2 starts each chunk from the last state of the previous one, so pose and
blink run on continuously; stage 3 samples windows of at most ``max_frames`` that overlap by
``chunk_overlap`` frames, and cross-fades their motion over each overlap before stage 1 renders it, so a
join does not jump.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dawn_lightning import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dawn_lightning.bundles import bundle_checkpoints, resolve_bundle
from dawn_lightning.checkpoints import (
    check_motion_checkpoint,
    default_checkpoints,
    load_motion_autoencoder,
    load_motion_diffusion,
    load_pose_blink_generator,
    resolve_checkpoint,
)
from dawn_lightning.data.audio_features import features_from_spec
from dawn_lightning.data.portrait import load_portrait
from dawn_lightning.data.speech import load_speech
from dawn_lightning.diffusion import DEFAULT_SAMPLER, sampler_from_settings
from dawn_lightning.models.audio_to_motion.motion_diffusion import (
    BLINK_DIM,
    POSE_DIM,
    MotionDiffusion,
    x0_to_motion,
)
from dawn_lightning.models.audio_to_motion.temporal_attention import TemporalAttention, set_temporal_window
from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
from dawn_lightning.pipeline.chunks import blend_chunks, chunk_bounds, overlapping_chunks
from dawn_lightning.pipeline.device import PRECISIONS, resolve_device, resolve_precision
from dawn_lightning.pipeline.initial_state import (
    FaceInitialState,
    InitialStateEstimator,
    MeanInitialState,
    PortraitState,
    face_backend_from_config,
)
from dawn_lightning.pipeline.inputs import load_pose_blink
from dawn_lightning.pipeline.pose_blink_pair import load_pose_blink_pair
from dawn_lightning.pipeline.video import GeneratedVideo
from dawn_lightning.tensors.frames import fit_length

log = logging.getLogger(__name__)
ENCODER_SETTING = "audio_features.model_path"  # in conf/generate.yaml and conf/preprocess.yaml
Progress = Callable[[Iterable[int]], Iterable[int]]


class DawnPipeline:
    """Portrait + speech -> `GeneratedVideo`, from the three stages' networks and checkpoint records.

    motion: stage 1 (`load_motion_autoencoder`); pose_blink, pose_blink_record: stage 2
    (`load_pose_blink_generator`, or `load_pose_blink_pair`); diffusion, diffusion_record: stage 3
    (`load_motion_diffusion`; its notices, e.g. of imported weights, are logged once here).
    device, precision: where to run ("auto": CUDA if available) and the autocast dtype of the networks
        ("fp32", "bf16" or "fp16").
    sampler: overrides of {name, num_steps, eta, guidance_scale, dynamic_threshold, spacing,
        reference_alpha_offset, temporal_smoothing}; the stage-3 checkpoint's settings otherwise.
    window: the temporal attention band of stage 3 in frames; None keeps the trained value.
    decode_batch_size: frames per stage-1 decoder call.
    temperature: scale of stage 2's latent noise (PBNet's z; the diffusion variant's starting noise, which
        its first x0 estimate all but ignores).
    portrait_mode, background: how the portrait becomes a square frame (`load_portrait`).
    max_frames, on_too_long: a length limit and what exceeding it does ("error" or "chunk").
    chunk_overlap: frames that consecutive stage-3 chunks share (at most under half of ``max_frames``); their
        motion is cross-faded there.
    initial_state: the portrait's face box, pose and blink; default: measured by ``face_backend`` when given
        (`FaceInitialState`), else `MeanInitialState`.
    face_backend: a face backend (`dawn_lightning.data.preprocess.face`, e.g. `MediaPipeFaceBackend`).
    encoder_path: the local model folder of the speech encoder (HuBERT, wav2vec 2.0, Whisper) for checkpoints
        trained on its features (default: the folder their recorded spec names, if it still exists).
    names: how errors and logs name the three checkpoints.
    """

    def __init__(
        self,
        motion: MotionAutoencoder,
        pose_blink: nn.Module,
        pose_blink_record: dict,
        diffusion: MotionDiffusion,
        diffusion_record: dict,
        *,
        device: str | torch.device = "cpu",
        precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32",
        sampler: Mapping[str, Any] | None = None,
        window: int | None = None,
        decode_batch_size: int = 32,
        temperature: float = 1.0,
        portrait_mode: Literal["crop", "pad"] = "crop",
        background: Literal["white", "black"] = "white",
        max_frames: int | None = None,
        on_too_long: Literal["error", "chunk"] = "error",
        chunk_overlap: int = 10,
        initial_state: InitialStateEstimator | None = None,
        face_backend: Any = None,
        encoder_path: str | os.PathLike | None = None,
        names: Mapping[str, str] | None = None,
    ):
        self.names = {"motion": "stage 1", "pose_blink": "stage 2", "diffusion": "stage 3"} | dict(
            names or {}
        )
        if on_too_long not in ("error", "chunk"):
            raise ValueError(f"on_too_long must be 'error' or 'chunk', got {on_too_long!r}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be a positive number of frames or null, got {max_frames}")
        if chunk_overlap < 0:
            raise ValueError(f"chunk_overlap must be a number of frames >= 0, got {chunk_overlap}")
        unknown = sorted(set(sampler or {}) - set(DEFAULT_SAMPLER))
        if unknown:
            raise ValueError(f"unknown sampler settings {unknown}; known: {sorted(DEFAULT_SAMPLER)}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.motion = motion.to(self.device).eval()
        self.pose_blink = pose_blink.to(self.device).eval()
        self.diffusion = diffusion.to(self.device).eval()
        self.pose_blink_record, self.diffusion_record = pose_blink_record, diffusion_record
        for notice in diffusion_record.get("warnings") or ():
            log.warning("%s: %s", self.names["diffusion"], notice)
        self.features = features_from_spec(
            self._audio_spec(), None if encoder_path is None else str(encoder_path), ENCODER_SETTING
        )
        self._check_sizes()
        self.sampler_settings = (
            DEFAULT_SAMPLER | dict(diffusion_record.get("sampler") or {}) | dict(sampler or {})
        )
        if window is not None:
            set_temporal_window(self.diffusion, window)
        self.decode_batch_size, self.temperature = int(decode_batch_size), float(temperature)
        self.portrait_mode, self.background = portrait_mode, background
        self.max_frames, self.on_too_long, self.chunk_overlap = max_frames, on_too_long, chunk_overlap
        self.signals = pose_blink_record.get("signals", "both")
        if initial_state is None and face_backend is not None:
            initial_state = self._face_initial_state(face_backend)
        self.initial_state = initial_state or self._mean_initial_state()
        self._warned_domain = False

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoints(
        cls,
        motion_ckpt: str | os.PathLike,
        pose_blink_ckpt: str | os.PathLike | tuple[str | os.PathLike, str | os.PathLike],
        diffusion_ckpt: str | os.PathLike,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        ema: bool = True,
        **options: Any,
    ) -> DawnPipeline:
        """Loads the three stages' checkpoints (files, or run folders holding ``checkpoints/last.ckpt``);
        stage 2 is one checkpoint or a (pose-only, blink-only) pair. ``ema``: stages 2 and 3 use their EMA
        weights where the run kept an average (false: the raw weights). ``options`` are the constructor's
        keyword arguments."""
        paths = {
            "motion": resolve_checkpoint(motion_ckpt),
            "diffusion": resolve_checkpoint(diffusion_ckpt),
        }
        motion = load_motion_autoencoder(paths["motion"])
        names = {k: f"stage-{i} checkpoint {paths[k]}" for i, k in ((1, "motion"), (3, "diffusion"))}
        if isinstance(pose_blink_ckpt, tuple | list):
            pose_path, blink_path = (resolve_checkpoint(p) for p in pose_blink_ckpt)
            pose_blink, pose_blink_record = load_pose_blink_pair(pose_path, blink_path, ema=ema)
            names["pose_blink"] = f"stage-2 checkpoints {pose_path} (pose) and {blink_path} (blink)"
        else:
            pose_blink, pose_blink_record = load_pose_blink_generator(
                resolve_checkpoint(pose_blink_ckpt), ema=ema
            )
            names["pose_blink"] = f"stage-2 checkpoint {resolve_checkpoint(pose_blink_ckpt)}"
        diffusion, diffusion_record = load_motion_diffusion(paths["diffusion"], ema=ema)
        check_motion_checkpoint(diffusion_record, paths["motion"])
        names = {k: names[k] for k in ("motion", "pose_blink", "diffusion")}
        for name in names.values():
            log.info("%s", name)
        return cls(
            motion,
            pose_blink,
            pose_blink_record,
            diffusion,
            diffusion_record,
            device=device,
            precision=precision,
            names=names,
            **options,
        )

    @classmethod
    def from_pretrained(
        cls, name: str | os.PathLike, revision: str | None = None, **kwargs: Any
    ) -> DawnPipeline:
        """A model bundle (`dawn-export`, `dawn-import-dawn --bundle`): a folder, or a hub repository id read
        through `huggingface_hub`'s cache (offline once cached, ``HF_HUB_OFFLINE=1``). ``kwargs`` as
        `from_checkpoints`' (device, precision, sampler, ...)."""
        stages = bundle_checkpoints(resolve_bundle(name, revision))
        if kwargs.get("encoder_path") is None and stages["audio_encoder"] is not None:
            kwargs["encoder_path"] = stages["audio_encoder"]  # the encoder the bundle carries
        return cls.from_checkpoints(stages["motion"], stages["pose_blink"], stages["diffusion"], **kwargs)

    @classmethod
    def from_run_dirs(
        cls,
        experiments_dir: str | os.PathLike = "experiments",
        motion: str | os.PathLike | None = None,
        pose_blink: str | os.PathLike | None = None,
        diffusion: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> DawnPipeline:
        """The newest run of each stage under ``experiments_dir`` (`default_checkpoints`), unless a checkpoint
        or run folder is given for it."""
        defaults = default_checkpoints(experiments_dir)
        return cls.from_checkpoints(
            motion or defaults["motion"],
            pose_blink or defaults["pose_blink"],
            diffusion or defaults["diffusion"],
            **kwargs,
        )

    @classmethod
    def from_config(cls, cfg: Mapping) -> DawnPipeline:
        """From a composed ``conf/generate.yaml`` (checkpoints or a bundle, device, precision and the
        options); stage 2 is ``checkpoints.pose_blink``, or the pair ``checkpoints.pose`` +
        ``checkpoints.blink`` when set."""
        options = {
            "device": cfg["device"],
            "precision": cfg["precision"],
            "sampler": {k: v for k, v in dict(cfg["sampler"]).items() if v is not None},
            "window": cfg["window"],
            "decode_batch_size": cfg["decode_batch_size"],
            "temperature": cfg["temperature"],
            "portrait_mode": cfg["framing"]["mode"],
            "background": cfg["framing"]["background"],
            "max_frames": cfg["max_frames"],
            "on_too_long": cfg["on_too_long"],
            "chunk_overlap": cfg["chunk_overlap"],
            "face_backend": face_backend_from_config(cfg.get("face")),
            "encoder_path": (cfg.get("audio_features") or {}).get("model_path"),
        }
        if cfg.get("bundle"):
            return cls.from_pretrained(cfg["bundle"], **options)
        checkpoints = cfg["checkpoints"]
        pose, blink = checkpoints.get("pose"), checkpoints.get("blink")
        if (pose is None) != (blink is None):
            raise ValueError(
                "checkpoints.pose and checkpoints.blink go together (a pose-only and a blink-only stage-2 "
                "model, as the released DAWN has): set both, or neither to use checkpoints.pose_blink"
            )
        return cls.from_checkpoints(
            checkpoints["motion"],
            (pose, blink) if pose is not None else checkpoints["pose_blink"],
            checkpoints["diffusion"] or default_checkpoints(cfg["paths"]["experiments_dir"])["diffusion"],
            **options,
        )

    def _audio_spec(self) -> dict:
        """The audio feature spec both generative stages were trained on (they must agree)."""
        spec2 = self.pose_blink_record.get("audio_features")
        spec3 = self.diffusion_record.get("audio_features")
        if spec2 is not None and spec3 is not None and _identity(spec2) != _identity(spec3):
            raise ValueError(
                "stages 2 and 3 were trained on different audio features:\n"
                f"  {self.names['pose_blink']}: {dict(spec2)}\n"
                f"  {self.names['diffusion']}: {dict(spec3)}\n"
                "train both on the same store (or its feature settings)"
            )
        spec = spec3 if spec3 is not None else spec2
        if spec is None:
            raise ValueError(
                f"neither {self.names['pose_blink']} nor {self.names['diffusion']} records its audio "
                "features; retrain with this version"
            )
        if spec2 is None:
            log.warning("%s does not record its audio features: assuming stage 3's", self.names["pose_blink"])
        return dict(spec)

    def _check_sizes(self) -> None:
        record, dim = self.diffusion_record, self.features.dim
        for key, net in (("pose_blink", self.pose_blink), ("diffusion", self.diffusion)):
            if net.config["audio_dim"] != dim:
                raise ValueError(
                    f"{self.names[key]} takes {net.config['audio_dim']}-wide audio features, its recorded "
                    f"features are {dim} wide"
                )
        for key in ("frame_size", "mean_face_box"):
            if record.get(key) is None:
                raise ValueError(
                    f"{self.names['diffusion']} does not record {key!r}; retrain with this version"
                )
        if self.diffusion.config["z_channels"] != self.motion.z_channels:
            raise ValueError(
                f"{self.names['diffusion']} expects z_src of {self.diffusion.config['z_channels']} channels, "
                f"{self.names['motion']} gives {self.motion.z_channels}"
            )
        motion_size = round(self.frame_size * self.motion.config["scale_factor"])
        if motion_size % self.diffusion.spatial_factor:
            raise ValueError(
                f"frame size {self.frame_size} gives {motion_size} px motion, not divisible by "
                f"the U-Net's {self.diffusion.spatial_factor}"
            )

    def _face_initial_state(self, backend) -> FaceInitialState:
        """Measured by ``backend``; for stages whose recorded initial state has units of their own (imported
        DAWN weights: 3DDFA pose, eye ratios), only the face box is measured."""
        recorded = self.diffusion_record.get("initial_state")
        if not recorded:
            return FaceInitialState(backend)
        log.warning(
            "%s records its own pose/blink units (imported weights): the face backend measures the "
            "portrait's face box, pose and blink stay at the recorded %s and %s",
            self.names["diffusion"],
            recorded["pose"],
            recorded["blink"],
        )
        return FaceInitialState(backend, keep=self._mean_initial_state().state)

    def _initial_state(self, portrait, image: torch.Tensor) -> PortraitState:
        """The estimator's state of the portrait square ``image`` (3, S, S); a face backend that finds no face
        is an error naming the portrait."""
        from dawn_lightning.data.preprocess.portrait_state import NoFaceError

        resolution = getattr(self.initial_state, "resolution", None)
        if resolution and resolution > self.frame_size:
            image = load_portrait(portrait, int(resolution), self.portrait_mode, self.background)
        try:
            return self.initial_state(image)
        except NoFaceError as error:
            name = str(portrait) if isinstance(portrait, str | os.PathLike) else "the portrait array"
            raise NoFaceError(f"{name}: {error}; use a portrait with a clearly visible face") from None

    def _mean_initial_state(self) -> MeanInitialState:
        """The stage-3 checkpoint's recorded initial state if it has one (imported weights: the reference's
        defaults), else the stage-2 training data's mean."""
        box = torch.tensor(self.diffusion_record["mean_face_box"])
        recorded = self.diffusion_record.get("initial_state")
        if recorded:
            return MeanInitialState(box, torch.tensor(recorded["pose"]), torch.tensor(recorded["blink"]))
        mean = self.pose_blink_record["mean"].float().cpu()
        pose, blink = torch.zeros(POSE_DIM), torch.zeros(BLINK_DIM)
        if self.signals in ("both", "pose"):
            pose = mean[:POSE_DIM]
        if self.signals in ("both", "blink"):
            blink = mean[-BLINK_DIM:]
        return MeanInitialState(box, pose, blink)

    def _warn_out_of_domain(self, portrait) -> None:
        """Once: a stage 3 trained on synthetic faces only meets a portrait larger than its frames (a photo,
        not one of its training frames), whose video will keep the person but barely move the lips."""
        if self._warned_domain or self.diffusion_record.get("store_kind") != "synthetic":
            return
        side = portrait_side(portrait)
        if side is None or side <= self.frame_size:
            return
        self._warned_domain = True
        log.warning(
            "%s was trained on synthetic %d-px faces only (the demo's data): on a real portrait expect the "
            "right person with lips that barely move. For real faces use the released DAWN weights "
            "(dawn-import-dawn) or train on real videos (dawn-preprocess); see the README",
            self.names["diffusion"],
            self.frame_size,
        )

    @property
    def frame_size(self) -> int:
        return int(self.diffusion_record["frame_size"])

    @property
    def window(self) -> int | None:
        """The temporal attention band of stage 3 in use."""
        windows = {m.window for m in self.diffusion.modules() if isinstance(m, TemporalAttention)}
        return windows.pop() if len(windows) == 1 else None

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    # -- generation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        portrait: str | os.PathLike | np.ndarray | torch.Tensor,
        speech: str | os.PathLike | np.ndarray | torch.Tensor,
        seed: int = 0,
        pose_blink: str | os.PathLike | np.ndarray | Mapping | None = None,
        progress: Progress | None = None,
    ) -> GeneratedVideo:
        """The video of ``portrait`` (an image file, or an array as `load_portrait` takes) speaking ``speech``
        (an audio file, or 16 kHz mono samples).

        pose_blink: None generates pose and blink with stage 2; a file or array (`load_pose_blink`) gives
            them instead, one row per video frame.
        progress: wraps each sampling loop's step indices (e.g. ``rich.progress.track``).
        """
        speech = load_speech(speech)
        num_frames = max(1, len(speech) // SAMPLES_PER_FRAME)
        bounds = self._chunks(num_frames)
        given = None
        if pose_blink is not None:
            given = load_pose_blink(pose_blink)
            if len(given[0]) != num_frames:
                name = (
                    str(pose_blink) if isinstance(pose_blink, str | os.PathLike) else "the pose/blink array"
                )
                raise ValueError(
                    f"{name}: {len(given[0])} frames of pose/blink, but the audio gives {num_frames} frames "
                    f"({num_frames * SAMPLES_PER_FRAME / SAMPLE_RATE:.2f} s at {FPS} fps)"
                )
        image = load_portrait(portrait, self.frame_size, self.portrait_mode, self.background)
        self._warn_out_of_domain(portrait)
        speech = fit_length(speech, num_frames)
        started = time.perf_counter()
        features = torch.from_numpy(self.features(speech, num_frames)).to(self.device)[None]
        timings = {
            "audio_features": time.perf_counter() - started,
            "stage2": 0.0,
            "stage3": 0.0,
            "stage1": 0.0,
        }
        state = self._initial_state(portrait, image)
        source = self.motion.encode(image[None].to(self.device))
        context = self.diffusion.context(source.z, state.face_box[None].to(self.device))
        ref_pose, ref_blink = state.pose[None].to(self.device), state.blink[None].to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        log.info(
            "%d frames (%.2f s) at %d px in %d chunk(s); features %.1f s",
            num_frames,
            num_frames / FPS,
            self.frame_size,
            len(bounds),
            time.perf_counter() - started,
        )
        init = self._normalise(torch.cat([ref_pose, ref_blink], dim=-1))
        poses, blinks = [], []
        clock = time.perf_counter()
        for index, (start, stop) in enumerate(bounds):  # stage 2 runs on from chunk to chunk
            if given is None:
                audio_chunk = features[:, start:stop]
                pose, blink, init = self._pose_blink(audio_chunk, init, seed + index, ref_pose, ref_blink)
            else:
                pose = torch.from_numpy(given[0][start:stop]).to(self.device)[None]
                blink = torch.from_numpy(given[1][start:stop]).to(self.device)[None]
            poses.append(pose)
            blinks.append(blink)
        pose, blink = torch.cat(poses, dim=1), torch.cat(blinks, dim=1)
        timings["stage2"] = time.perf_counter() - clock
        clock = time.perf_counter()
        windows = self._windows(num_frames)
        pieces = [
            self._motion(
                context,
                features[:, start:stop],
                pose[:, start:stop],
                blink[:, start:stop],
                ref_pose,
                ref_blink,
                generator,
                progress,
            )
            for start, stop in windows
        ]
        x0 = pieces[0] if len(pieces) == 1 else blend_chunks(pieces, windows, num_frames)
        timings["stage3"] = time.perf_counter() - clock
        clock = time.perf_counter()
        frames = self._render(source, x0)
        timings["stage1"] = time.perf_counter() - clock
        log.info("generated in %.1f s", time.perf_counter() - started)
        return GeneratedVideo(
            frames,
            speech,
            pose[0].float().cpu().numpy(),
            blink[0].float().cpu().numpy(),
            FPS,
            SAMPLE_RATE,
            timings,
        )

    def _chunks(self, num_frames: int) -> list[tuple[int, int]]:
        """Stage 2's consecutive chunks of at most ``max_frames`` (one when the input fits)."""
        if self.max_frames is None or num_frames <= self.max_frames:
            return chunk_bounds(num_frames, None)
        if self.on_too_long == "error":
            raise ValueError(
                f"the audio gives {num_frames} frames ({num_frames / FPS:.1f} s), more than max_frames="
                f"{self.max_frames}: raise max_frames (or set it to null), or generate in chunks with "
                "on_too_long=chunk"
            )
        return chunk_bounds(num_frames, self.max_frames)

    def _windows(self, num_frames: int) -> list[tuple[int, int]]:
        """Stage 3's windows of at most ``max_frames``, consecutive ones sharing ``chunk_overlap`` frames."""
        if self.max_frames is None or num_frames <= self.max_frames:
            return [(0, num_frames)]
        overlap = min(self.chunk_overlap, (self.max_frames - 1) // 2)  # under half a window
        return overlapping_chunks(num_frames, self.max_frames, overlap)

    # stage 2 works on the normalised states of its signals; stage 3 on pose (6) and blink (2)
    def _normalise(self, states: torch.Tensor) -> torch.Tensor:
        mean, std = self.pose_blink_record["mean"].to(states), self.pose_blink_record["std"].to(states)
        return (self._select(states) - mean) / std

    def _select(self, states: torch.Tensor) -> torch.Tensor:
        if self.signals == "pose":
            return states[..., :POSE_DIM]
        if self.signals == "blink":
            return states[..., POSE_DIM:]
        return states

    def _pose_blink(
        self,
        audio: torch.Tensor,
        init: torch.Tensor,
        seed: int,
        ref_pose: torch.Tensor,
        ref_blink: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """audio (1, F, D), init (1, K) normalised -> pose (1, F, 6), blink (1, F, 2) and the last state
        (1, K) normalised. A signal the stage-2 model does not generate stays at the portrait's."""
        states = self.pose_blink.generate(audio, init, temperature=self.temperature, seed=seed).float()
        record = self.pose_blink_record
        raw = states * record["std"].to(states) + record["mean"].to(states)
        length = audio.shape[1]
        if self.signals == "both":
            pose, blink = raw[..., :POSE_DIM], raw[..., POSE_DIM:]
        elif self.signals == "pose":
            pose, blink = raw, ref_blink[:, None].expand(-1, length, -1)
        else:
            pose, blink = ref_pose[:, None].expand(-1, length, -1), raw
        return pose, blink, states[:, -1]

    def _motion(
        self,
        context: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        blink: torch.Tensor,
        ref_pose: torch.Tensor,
        ref_blink: torch.Tensor,
        generator: torch.Generator,
        progress: Progress | None,
    ) -> torch.Tensor:
        """Stage 3: motion x0 (1, 3, F, h, w) for one chunk's conditions."""
        s = self.sampler_settings
        sampler = sampler_from_settings(s, self.diffusion.schedule, self.diffusion.prediction)
        conditions = self.diffusion.conditions(audio, pose, blink, ref_pose, ref_blink)
        with self._autocast():
            x0 = self.diffusion.sample(
                sampler,
                context,
                **conditions,
                guidance_scale=s["guidance_scale"],
                dynamic_threshold=s["dynamic_threshold"],
                generator=generator,
                progress=progress,
                temporal_smoothing=s["temporal_smoothing"],
            )
        return x0.float()

    def _render(self, source, x0: torch.Tensor) -> np.ndarray:
        """Stage 1: x0 (1, 3, F, h, w) -> frames uint8 (F, S, S, 3), ``decode_batch_size`` frames a call."""
        grid, occlusion = x0_to_motion(x0)
        frames = []
        for start in range(0, len(grid), self.decode_batch_size):
            stop = start + self.decode_batch_size
            with self._autocast():
                batch = self.motion.decode(source, grid[start:stop], occlusion[start:stop])
            uint8 = (batch.float().clamp(0, 1) * 255).round().to(torch.uint8)
            frames.append(uint8.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(frames)


def portrait_side(portrait) -> int | None:
    """The longer side in pixels of a portrait file (read from its header) or array; None if unknown."""
    if isinstance(portrait, str | os.PathLike):
        from PIL import Image

        try:
            with Image.open(portrait) as image:
                return max(image.size)
        except OSError:
            return None
    shape = getattr(portrait, "shape", None)
    if shape is None or len(shape) < 2:
        return None
    spatial = (
        shape[1:] if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4) else shape[:2]
    )
    return int(max(spatial))


def _identity(spec: Mapping) -> dict:
    """An audio feature spec without where its model lay on disk (two copies of one model are one feature)."""
    return {k: v for k, v in dict(spec).items() if k != "path"}
