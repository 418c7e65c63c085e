"""The evaluation suite: every metric of a talking-head evaluation, fed one (real, generated) video pair at a
time, computed to labelled numbers.

Settings (conf/evaluate.yaml ``metrics``): fid {weights, random_dim, random_size, degradation_frames}, fvd
{weights, clip_lengths, random_dim}, lse {kind, weights}, lpips {weights}, csim {weights}. A metric whose
weights are not configured is skipped with one line in ``notes`` naming the setting (FID/FVD fall back to
random features and LPIPS to a random backbone, labelled as such); a weights file in the wrong format raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from dawn_lightning import FPS
from dawn_lightning.metrics.csim import IdentitySimilarity, load_face_recognition
from dawn_lightning.metrics.face_crop import CropSettings, Detector, face_crop
from dawn_lightning.metrics.fid import FID, image_features
from dawn_lightning.metrics.fvd import FVD, video_features
from dawn_lightning.metrics.lpips import LPIPS
from dawn_lightning.metrics.lse import IN_SYNC_FRAMES, SYNCNET_URL, LipSyncError, load_syncnet_v2
from dawn_lightning.metrics.motion_stats import (
    beat_align_score,
    blink_rate,
    motion_beats,
    onset_frames_from_logmel,
)
from dawn_lightning.metrics.mouth_sync import frame_change, mouth_audio_correlation, mouth_motion
from dawn_lightning.metrics.video_mean import VideoMean

log = logging.getLogger(__name__)
CHUNK_FRAMES = 16  # frames converted to float and scored at a time
LSE_SIDES = {"truth": "ground truth", "generated": "generated", "control": "generated + another clip's audio"}


def _images(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in [0, 1]."""
    return (
        rearrange(torch.from_numpy(np.ascontiguousarray(frames)).to(device), "t h w c -> t c h w").float()
        / 255
    )


def resize_frames(images: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, size, size), bilinear as `FVD` resizes (it then leaves them as they are)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


PUBLISHED_WEIGHTS = {  # the networks papers' numbers come from
    "fid": "pytorch-fid's pt_inception-2015-12-05-6726825d.pth",
    "fvd": "StyleGAN-V's i3d_torchscript.pt",
    "lse": "syncnet_python's syncnet_v2.model (with metrics.lse.kind=syncnet_v2)",
    "csim": "an ArcFace .onnx, e.g. insightface's w600k_r50.onnx",
}


def check_published_weights(settings: Mapping) -> None:
    """Refuses a protocol run (``require_weights``) that would fall back to random stand-ins: every unset
    weights setting is named, with the file it needs."""
    missing = [
        f"metrics.{k}.weights ({what})" for k, what in PUBLISHED_WEIGHTS.items() if not settings[k]["weights"]
    ]
    if missing:
        raise ValueError(f"this protocol needs every metric's published weights; set {'; '.join(missing)}")


def _sum_over_processes(count: int) -> int:
    """``count`` summed over the processes of a distributed evaluation (itself in a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return count
    total = torch.tensor(count)
    dist.all_reduce(total)
    return int(total)


def build_syncnet(kind: str, weights: str):
    if kind == "syncnet_v2":
        return load_syncnet_v2(weights)
    if kind == "compact":
        from dawn_lightning.checkpoints import load_compact_syncnet

        return load_compact_syncnet(weights)
    raise ValueError(f"metrics.lse.kind must be 'compact' (make train-syncnet) or 'syncnet_v2', got {kind!r}")


class EvaluationSuite:
    """``add_video(...)`` per test clip, then ``results()``: {key: {"label", "value"}} and ``notes``."""

    def __init__(self, settings: Mapping, device: str | torch.device = "cpu", detect: Detector | None = None):
        """``detect``: the face detector of LSE's face crop (`face_crop`), needed with
        ``lse.face_crop``."""
        self.device = torch.device(device)
        self.detect = detect
        if settings.get("require_weights"):
            check_published_weights(settings)
        self.notes: list[str] = []
        self.labels: dict[str, str] = {}
        self.metrics: dict[str, Metric] = {}
        self.dr_frames = int(settings["fid"]["degradation_frames"])
        self._build_frechet(settings)
        self._build_frame_metrics(settings)
        self._build_lse(settings["lse"])
        for side in ("generated", "truth"):
            for key, label in (
                ("blinks_per_s", "blinks / s"),
                ("pose_diversity", "pose diversity (std of yaw/pitch/roll, degrees)"),
                ("beat_align", "beat-align score (audio onsets vs head-motion beats)"),
            ):
                self._add(f"{key}_{side}", f"{label}, {side}", VideoMean())
        for side in ("generated", "truth"):
            label = f"lip-sync proxy r(mouth darkness, speech energy), {side}"
            self._add(f"lip_proxy_{side}", label, VideoMean())
            self._add(f"mouth_motion_{side}", f"mouth motion (std of its darkness), {side}", VideoMean())
            self._add(f"frame_change_{side}", f"frame-to-frame change (mean abs, 0-255), {side}", VideoMean())
        self._add("seconds_per_output_second", "generation seconds per output second", VideoMean())
        self.motion_seen = self.speed_seen = self.proxy_seen = False

    def _add(self, key: str, label: str, metric: Metric) -> None:
        self.labels[key] = label
        self.metrics[key] = metric.to(self.device)

    def _build_frechet(self, settings: Mapping) -> None:
        fid, fvd = settings["fid"], settings["fvd"]
        net, label = image_features(fid["weights"], fid["random_dim"], fid["random_size"])
        self._add("fid", label, FID(net))
        if fid["weights"] is None:
            self.notes.append(f"{label}: metrics.fid.weights is not set (pytorch-fid's Inception weights)")
        n = self.dr_frames
        self._add("fid_first", f"{label}, first {n} frames of each generated video", FID(net))
        self._add("fid_last", f"{label}, last {n} frames of each generated video", FID(net))
        net, size, name = video_features(fvd["weights"], fvd["random_dim"])
        if fvd["weights"] is None:
            self.notes.append(
                f"FVD ({name}): metrics.fvd.weights is not set (StyleGAN-V's i3d_torchscript.pt)"
            )
        for length in fvd["clip_lengths"]:
            self._add(f"fvd{length}", f"FVD{length} ({name})", FVD(net, int(length), size))

    def _build_frame_metrics(self, settings: Mapping) -> None:
        self._add("ssim", "SSIM", StructuralSimilarityIndexMeasure(data_range=1.0))
        self._add("psnr", "PSNR (dB)", PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)))
        lpips_weights = settings["lpips"]["weights"]
        lpips = LPIPS(lpips_weights, setting="metrics.lpips.weights")
        label = "LPIPS" if lpips_weights else "LPIPS (random AlexNet backbone, not comparable to papers)"
        if lpips_weights is None:
            self.notes.append(
                f"{label}: metrics.lpips.weights is not set (torchvision's alexnet-owt-7be5be79.pth)"
            )
        self._add("lpips", label, lpips)
        weights = settings["csim"]["weights"]
        if weights is None:
            self.notes.append(
                "CSIM skipped: metrics.csim.weights is not set (an ArcFace ONNX file, or a TorchScript one)"
            )
        else:
            self._add(
                "csim",
                "CSIM (identity cosine similarity)",
                IdentitySimilarity(load_face_recognition(weights)),
            )

    def _build_lse(self, settings: Mapping) -> None:
        weights, kind = settings["weights"], settings["kind"]
        hint = "`make train-syncnet`" if kind == "compact" else SYNCNET_URL
        if weights is None or not Path(weights).is_file():
            reason = "is not set" if weights is None else f"{weights} does not exist"
            self.notes.append(f"LSE-C/LSE-D skipped: metrics.lse.weights {reason} (kind {kind}: {hint})")
            self.syncnet = None
            return
        self.syncnet = build_syncnet(kind, weights).to(self.device)
        self.crop = CropSettings(**settings["crop"]) if settings.get("face_crop") else None
        if self.crop is not None and self.detect is None:
            raise ValueError(
                "metrics.lse.face_crop needs a face detector: set face.model_path (DAWN_FACE_MODEL)"
            )
        self.uncropped = 0
        name = "project SyncNet" if kind == "compact" else "syncnet_v2"
        name += ", face crop of syncnet_python's pipeline" if self.crop is not None else ""
        for side, description in LSE_SIDES.items():
            self._add(f"lse_{side}", f"LSE ({name}), {description}", LipSyncError(self.syncnet))

    # -- feeding -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def add_video(
        self,
        real: np.ndarray,
        fake: np.ndarray,
        audio: np.ndarray,
        fake_audio: np.ndarray | None = None,
        control_audio: np.ndarray | None = None,
    ) -> None:
        """real, fake: uint8 (T, H, W, 3) (compared over their common length); audio: the real video's 16 kHz
        speech; fake_audio: the generated video's (default: ``audio``); control_audio: another clip's speech,
        paired with the generated frames for the LSE control."""
        length = min(len(real), len(fake))
        fid_net = self.metrics["fid"]
        features = {"real": [], "fake": []}
        fvd_size = next((m.size for k, m in self.metrics.items() if k.startswith("fvd")), None)
        fvd_frames = {"real": [], "fake": []}  # each video at the FVD network's size (3, T, s, s)
        for start in range(0, max(len(real), len(fake)), CHUNK_FRAMES):  # memory bounded at any size
            images = {}
            for side, video in (("real", real), ("fake", fake)):
                if start < len(video):
                    images[side] = _images(video[start : start + CHUNK_FRAMES], self.device)
                    features[side].append(fid_net.features(images[side]))
                    if fvd_size is not None:
                        fvd_frames[side].append(resize_frames(images[side], fvd_size))
            common = max(0, min(CHUNK_FRAMES, length - start))
            if common:
                for key in ("ssim", "psnr", "lpips"):
                    self.metrics[key].update(images["fake"][:common], images["real"][:common])
            if "csim" in self.metrics and "fake" in images:
                if start == 0:
                    reference = images["real"][0]
                self.metrics["csim"].update(reference, images["fake"])
        real_features, fake_features = torch.cat(features["real"]), torch.cat(features["fake"])
        for key in ("fid", "fid_first", "fid_last"):
            self.metrics[key].update(real_features, real=True, features=True)
        self.metrics["fid"].update(fake_features, real=False, features=True)
        if len(fake) >= self.dr_frames:
            self.metrics["fid_first"].update(fake_features[: self.dr_frames], real=False, features=True)
            self.metrics["fid_last"].update(fake_features[-self.dr_frames :], real=False, features=True)
        for key, metric in self.metrics.items():
            if key.startswith("fvd"):
                metric.update(rearrange(torch.cat(fvd_frames["real"]), "t c h w -> c t h w"), real=True)
                metric.update(rearrange(torch.cat(fvd_frames["fake"]), "t c h w -> c t h w"), real=False)
        if self.syncnet is not None:
            self._lip_sync(real, fake, audio, audio if fake_audio is None else fake_audio, control_audio)

    def _lip_sync(self, real, fake, audio, fake_audio, control_audio) -> None:
        """LSE of the truth, the generated video and the control, on the face crops with ``face_crop``."""
        sides = [("lse_truth", real, audio), ("lse_generated", fake, fake_audio)]
        if control_audio is not None:
            sides.append(("lse_control", fake, control_audio))
        for key, frames, speech in sides:
            if self.crop is not None:
                cropped = face_crop(frames, speech, self.detect, self.crop)
                if cropped is None:  # no face tracked for min_track frames: this video has no LSE
                    self.uncropped += 1
                    continue
                frames, speech = cropped
            self.metrics[key].update(frames, speech)

    def add_motion(self, side: str, pose: np.ndarray, blink: np.ndarray, audio_features: np.ndarray) -> None:
        """One video's pose (T, 6), blink (T, 2) and audio features (T, D) (log-mel: onsets), ``side``
        "generated" or "truth"."""
        pose, blink = torch.as_tensor(pose).float(), torch.as_tensor(blink).float()
        self.metrics[f"blinks_per_s_{side}"].update(blink_rate(blink))
        self.metrics[f"pose_diversity_{side}"].update(float(pose[:, :3].std(0).mean()))
        onsets = onset_frames_from_logmel(torch.as_tensor(audio_features[: len(pose)]).float())
        self.metrics[f"beat_align_{side}"].update(beat_align_score(onsets, motion_beats(pose[:, :3])))
        self.motion_seen = True

    def add_lip_proxy(
        self, real: np.ndarray, fake: np.ndarray, mouth_box: np.ndarray, audio: np.ndarray
    ) -> None:
        """The weight-free measures of both videos: the lip-sync proxy (the correlation of the darkness inside
        the first frame's mouth box with the speech energy), the mouth's motion and the frames' change."""
        for side, frames in (("truth", real), ("generated", fake)):
            self.metrics[f"lip_proxy_{side}"].update(mouth_audio_correlation(frames, mouth_box, audio))
            self.metrics[f"mouth_motion_{side}"].update(mouth_motion(frames, mouth_box))
            self.metrics[f"frame_change_{side}"].update(frame_change(frames))
        self.proxy_seen = True

    def add_speed(self, seconds: float, num_frames: int) -> None:
        self.metrics["seconds_per_output_second"].update(seconds / (num_frames / FPS))
        self.speed_seen = True

    # -- results -----------------------------------------------------------------------------------------
    def results(self) -> dict[str, dict]:
        """{key: {"label", "value"}} of every metric that has data, plus the degradation rate."""
        out: dict[str, dict] = {}
        if self.syncnet is not None and self.crop is not None:
            self.uncropped = _sum_over_processes(self.uncropped)
        if self.syncnet is not None and self.crop is not None and self.uncropped:
            self.notes.append(
                f"LSE: {self.uncropped} video(s) left out: no face tracked for metrics.lse.crop.min_track="
                f"{self.crop.min_track} frames larger than {self.crop.min_face_size:g} px"
            )
        for key, metric in self.metrics.items():
            unfed = (
                (key.startswith(("blinks", "pose_", "beat_")) and not self.motion_seen)
                or (key.startswith("seconds") and not self.speed_seen)
                or (key.startswith(("lip_proxy", "mouth_motion", "frame_change")) and not self.proxy_seen)
            )
            if unfed:
                continue
            try:
                value = metric.compute()
            except ValueError as error:  # too few samples for a Frechet distance, no clip long enough
                self.notes.append(f"{self.labels[key]}: not computed ({error})")
                continue
            if isinstance(value, dict):
                base = self.labels[key]
                side = key.removeprefix("lse_")
                out[f"lse_c_{side}"] = {"label": f"{base}: LSE-C", "value": float(value["lse_c"])}
                out[f"lse_d_{side}"] = {"label": f"{base}: LSE-D", "value": float(value["lse_d"])}
                out[f"av_offset_{side}"] = {
                    "label": f"{base}: mean abs AV offset (frames)",
                    "value": float(value["offset"]),
                }
                out[f"in_sync_{side}"] = {
                    "label": f"{base}: share of videos in sync (|offset| <= {IN_SYNC_FRAMES} frame)",
                    "value": float(value["in_sync"]),
                }
            else:
                out[key] = {"label": self.labels[key], "value": float(value)}
        if "fid_first" in out and "fid_last" in out:
            first = out.pop("fid_first")["value"]
            last = out.pop("fid_last")["value"]
            out[f"degradation_rate_{self.dr_frames}"] = {
                "label": f"DR_{self.dr_frames} = FID(last)/FID(first) - 1 ({self.labels['fid']})",
                "value": last / first - 1 if first > 0 else float("nan"),
            }
        if not self.motion_seen:
            self.notes.append(
                "motion metrics skipped: no pose/blink tracks (generated by the pipeline or a store)"
            )
        return out
