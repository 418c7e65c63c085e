"""dawn-lightning: DAWN talking-head generation as a Lightning + Hydra framework."""

__version__ = "0.1.0"

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: every per-frame signal is aligned 1:1 with video frames
