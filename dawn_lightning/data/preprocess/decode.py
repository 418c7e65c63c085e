"""Decoding a source video: frames resampled to 25 fps by timestamp (decord), audio as 16 kHz mono (PyAV).

Frame k of the output shows the source frame whose timestamp is nearest to k / 25 s after the first frame;
audio is placed on the same timeline (the streams' start times are honoured), so sample 640 k is heard at
frame k.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE


class VideoDecodeError(OSError):
    """The video cannot be opened or decoded; the message names the file."""


class NoAudioError(ValueError):
    """The video has no audio stream (such videos are skipped)."""


def resample_indices(timestamps: np.ndarray, duration: float, fps: float = FPS) -> np.ndarray:
    """Source frame index for every output frame: the frame whose start time is nearest to k / fps, for
    k = 0 .. floor(duration * fps) - 1. ``timestamps`` (N,) are the sorted frame start times in seconds
    from the first frame; ``duration`` is the end time of the last frame."""
    count = int(np.floor(duration * fps + 1e-6))
    instants = np.arange(count) / fps
    right = np.clip(np.searchsorted(timestamps, instants), 1, len(timestamps) - 1)
    left = right - 1
    nearer_left = instants - timestamps[left] <= timestamps[right] - instants
    return np.where(nearer_left, left, right) if len(timestamps) > 1 else np.zeros(count, dtype=np.int64)


@dataclass
class SourceVideo:
    """An opened video: its resampled frame indices and the aligned audio. Frames are read on demand."""

    path: Path
    indices: np.ndarray  # (T,) source frame of each 25 fps output frame
    audio: np.ndarray  # float32 (>= T * 640,) 16 kHz mono, sample 0 at the first video frame
    source_fps: float
    height: int
    width: int
    _reader: object = None
    _kept: np.ndarray | None = None  # frames decoded once and kept (see ``chunks``)
    _kept_until: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.indices)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """uint8 (stop - start, H, W, 3) output frames [start, stop) at 25 fps."""
        if self._kept is not None and stop <= self._kept_until:
            return self._kept[start:stop]
        wanted = self.indices[start:stop]
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            batch = self._reader.get_batch(unique.tolist()).asnumpy()
        except Exception as error:  # decord raises DECORDError with a C++ trace: keep its first line
            raise VideoDecodeError(
                f"{self.path}: cannot decode frames {start}..{stop - 1} ({str(error).splitlines()[0]})"
            ) from None
        return batch[inverse]

    def chunks(self, size: int, keep_mb: float = 0):
        """(start, frames) for consecutive chunks of at most ``size`` output frames. When all the frames take
        at most ``keep_mb`` MiB they are kept, so later ``frames`` calls need no second decode."""
        if self.num_frames * self.height * self.width * 3 <= keep_mb * 2**20:
            self._kept = np.empty((self.num_frames, self.height, self.width, 3), np.uint8)
        for start in range(0, self.num_frames, size):
            frames = self.frames(start, min(start + size, self.num_frames))
            if self._kept is not None:
                self._kept[start : start + len(frames)] = frames
                self._kept_until = start + len(frames)
            yield start, frames


def open_video(path: str | os.PathLike) -> SourceVideo:
    """Open ``path``; raises NoAudioError without an audio stream, VideoDecodeError if unreadable."""
    import decord

    path = Path(path)
    audio = _decode_audio(path)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        count = len(reader)
        if count == 0:
            raise VideoDecodeError(f"{path}: no video frames")
        times = reader.get_frame_timestamp(range(count))
        height, width = reader[0].shape[:2]
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot decode video ({str(error).splitlines()[0]})") from None
    indices = resample_indices(times[:, 0], float(times[-1, 1]))
    if len(indices) == 0:
        raise VideoDecodeError(f"{path}: shorter than one frame at {FPS} fps")
    audio = audio[: len(indices) * SAMPLE_RATE // FPS]
    audio = np.pad(audio, (0, max(0, len(indices) * SAMPLE_RATE // FPS - len(audio))))
    return SourceVideo(path, indices, audio, float(reader.get_avg_fps()), height, width, reader)


def _decode_audio(path: Path) -> np.ndarray:
    """The audio (N,) at 16 kHz mono, sample 0 at the start time of the video stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            if not container.streams.audio:
                raise NoAudioError(f"{path}: no audio stream")
            video = container.streams.video[0]
            video_start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            pieces, audio_start = [], None
            for frame in container.decode(container.streams.audio[0]):
                if audio_start is None:
                    audio_start = float(frame.pts * frame.time_base) if frame.pts is not None else video_start
                pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (NoAudioError, VideoDecodeError):
        raise
    except (av.FFmpegError, OSError) as error:
        raise VideoDecodeError(f"{path}: cannot decode ({error})") from None
    audio = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    if not len(audio):
        raise NoAudioError(f"{path}: the audio stream holds no samples")
    shift = int(round(((audio_start or video_start) - video_start) * SAMPLE_RATE))
    audio = np.pad(audio, (shift, 0)) if shift > 0 else audio[-shift:]
    return audio
