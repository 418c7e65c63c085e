"""End-to-end generation benchmark (issue 5): seconds per second of output video and peak memory of the whole
inference pipeline, portrait + speech -> mp4, broken down into its phases: audio features, stage 2 (pose and
blink), stage 3 sampling (all frames at once), stage 1 decoding and encoding to mp4.

Sizes: 64 px (the CPU-demo models ``motion_64``, ``pbnet_cpu``, ``audio_to_motion_64``) and 128 px (the
paper's sizes, ``motion_128``, ``pbnet``, ``audio_to_motion_128``). The networks are built from those configs
with random weights (timing and memory do not depend on the weights) and saved as the three checkpoints the
pipeline loads, so the measured code is `DawnPipeline` itself. Audio features are our default log-mel (80
wide); the paper's HuBERT features are 1024 wide, which widens only the first layers of stages 2 and 3.

Every (size, seconds) configuration runs in a fresh process (multiprocessing, "spawn"): load the pipeline,
one short warm-up generation (imports, first-call set-up), then the measured generation and mp4 encoding.
Peak memory is the resident-set high-water mark over the measured run (VmHWM reset just before it, where
Linux allows; ``ru_maxrss`` elsewhere): "process" is that mark, "working" is it minus the resident set right
after loading the pipeline. Memory must grow linearly with the clip's length: `linearity` checks that the
longest clip's working peak is at most (frames ratio) x the shortest clip's plus `MEMORY_SLACK_MIB`.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dawn_lightning import FPS, SAMPLE_RATE
from dawn_lightning.benchmarks.audio_to_motion import skip_reason
from dawn_lightning.benchmarks.memory import measured_row, peak_mib, reset_peak, rss_mib, run_isolated
from dawn_lightning.config import CONF_DIR

# Frame size -> the model configs of stages 1, 2 and 3 (conf/model/<name>.yaml).
SIZES: dict[int, dict[str, str]] = {
    64: {"motion": "motion_64", "pose_blink": "pbnet_cpu", "diffusion": "audio_to_motion_64"},
    128: {"motion": "motion_128", "pose_blink": "pbnet", "diffusion": "audio_to_motion_128"},
}
PHASES = ("audio_features", "stage2", "stage3", "stage1", "encode")
PAPER_AUDIO_DIM = 1024  # HuBERT-large, the paper's audio features
MEAN_FACE_BOX = [0.25, 0.2, 0.75, 0.85]
MEMORY_SLACK_MIB = 256.0  # the "small constant" of the linearity check
WARMUP_SECONDS = 1.0
# Plausible store statistics for the random stage-2 model (pose: degrees, scale, shift; blink: eye ratios)
STATE_MEAN = [2.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.3]
STATE_STD = [5.0, 4.0, 3.0, 0.05, 0.02, 0.02, 0.2, 0.2]


# -- models --------------------------------------------------------------------------------------------------
def model_config(name: str) -> DictConfig:
    """``conf/model/<name>.yaml`` with its ``defaults`` merged in order (``_self_`` last when not listed), as
    Hydra composes a config group's option; interpolations are left unresolved."""
    config = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    defaults = list(config.pop("defaults", None) or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        merged = OmegaConf.merge(merged, config if entry == "_self_" else model_config(str(entry)))
    return merged


def _net_kwargs(name: str, drop: tuple[str, ...]) -> dict[str, Any]:
    """The ``net`` node of model config ``name`` as constructor keyword arguments, without the Hydra keys
    and the ``drop`` keys (those that interpolate data-dependent sizes)."""
    net = OmegaConf.to_container(model_config(name).net, resolve=False)
    return {k: v for k, v in net.items() if not k.startswith("_") and k not in drop}


def network_configs(size: int) -> dict[str, dict[str, Any]]:
    """Constructor keyword arguments of the three stages' networks at ``size`` px, from the configs:
    {"motion": MotionAutoencoder, "pose_blink": PBNet without state_dim / audio_dim, "diffusion":
    MotionDiffusion without audio_dim / z_channels}."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size}")
    names = SIZES[size]
    return {
        "motion": _net_kwargs(names["motion"], ()),
        "pose_blink": _net_kwargs(names["pose_blink"], ("state_dim", "audio_dim")),
        "diffusion": _net_kwargs(names["diffusion"], ("audio_dim", "z_channels")),
    }


def write_checkpoints(
    size: int,
    root: str | os.PathLike,
    steps: int = 20,
    seed: int = 0,
    objective: str = "diffusion",
    sampler: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Random-weight checkpoints of the three stages at ``size`` px under ``root``, in the formats the stage
    loaders read: {"motion", "pose_blink", "diffusion"} -> path. Stage 3 has the ``objective`` and records
    ``sampler`` (default: DDIM with ``steps`` steps, eta 1, no thresholding, no guidance)."""
    from dawn_lightning.checkpoints import AUDIO_TO_MOTION, MOTION, POSE_BLINK, file_sha256, net_state, save
    from dawn_lightning.data.audio_features import LogMelFeatures
    from dawn_lightning.models.audio_to_motion.motion_diffusion import MotionDiffusion
    from dawn_lightning.models.motion.autoencoder import MotionAutoencoder
    from dawn_lightning.models.pose_blink.pbnet import PBNet

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {k: root / f"{k}_{size}.ckpt" for k in ("motion", "pose_blink", "diffusion")}
    configs = network_configs(size)
    spec = LogMelFeatures().spec
    torch.manual_seed(seed)

    motion = MotionAutoencoder(**configs["motion"]).eval()
    save(paths["motion"], MOTION, {"config": motion.config}, net_state(motion))

    pbnet = PBNet(state_dim=len(STATE_MEAN), audio_dim=spec["dim"], **configs["pose_blink"]).eval()
    state = net_state(pbnet) | {"state_mean": torch.tensor(STATE_MEAN), "state_std": torch.tensor(STATE_STD)}
    record = {"class": "PBNet", "config": pbnet.config, "signals": "both", "audio_features": spec}
    save(paths["pose_blink"], POSE_BLINK, record, state)

    # the objective is the caller's, not the model config's: this benchmark is about F, size and sampler
    diffusion_config = configs["diffusion"] | {"objective": objective}
    diffusion = MotionDiffusion(
        audio_dim=spec["dim"], z_channels=motion.z_channels, **diffusion_config
    ).eval()
    # a small residual motion scale, as fitted on real clips, keeps the random motion near the portrait
    diffusion.motion_scale.fill_(0.02)
    diffusion.has_motion_scale.fill_(True)
    record = {
        "config": diffusion.config,
        "motion_ckpt": str(paths["motion"]),
        "motion_ckpt_sha256": file_sha256(paths["motion"]),
        "sampler": sampler
        or {"name": "ddim", "num_steps": steps, "eta": 1.0, "dynamic_threshold": None, "guidance_scale": 1.0},
        "audio_features": spec,
        "frame_size": size,
        "mean_face_box": MEAN_FACE_BOX,
    }
    save(paths["diffusion"], AUDIO_TO_MOTION, record, net_state(diffusion))
    return paths


# -- inputs --------------------------------------------------------------------------------------------------
def speech_like(seconds: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech-like mono audio (N,) float32 in [-1, 1]: a voiced source on a slowly wandering pitch, shaped by
    two formants that change per syllable (0.12-0.3 s each, about one in seven silent), under a syllable
    envelope, with a little breath noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    durations = rng.uniform(0.12, 0.3, size=int(seconds / 0.12) + 2)
    starts = np.concatenate([[0.0], np.cumsum(durations)])
    syllable = np.searchsorted(starts, t, side="right") - 1
    position = (t - starts[syllable]) / durations[syllable]
    voiced = rng.random(len(durations)) > 0.15
    envelope = np.sin(np.pi * position) ** 2 * voiced[syllable]
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi)) + 8 * np.sin(2 * np.pi * 1.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    f1 = rng.uniform(300, 800, len(durations))[syllable]
    f2 = rng.uniform(900, 2300, len(durations))[syllable]
    voice = np.zeros(n)
    for k in range(1, 31):
        frequency = k * f0
        gain = 1 / (1 + ((frequency - f1) / 120) ** 2) + 0.5 / (1 + ((frequency - f2) / 200) ** 2)
        voice += gain * np.sin(k * phase) / math.sqrt(k)
    audio = envelope * voice
    audio = 0.5 * audio / max(float(np.abs(audio).max()), 1e-6) + 0.01 * rng.standard_normal(n)
    return np.clip(audio, -1, 1).astype(np.float32)


def synthetic_portrait(size: int, seed: int = 0) -> np.ndarray:
    """A smooth face-like RGB image (size, size, 3) uint8: shaded skin ellipse with hair, eyes and mouth on a
    graded background, edges softened."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size

    def soft(distance: np.ndarray) -> np.ndarray:  # 1 inside (distance < 1), smooth edge
        return 1 / (1 + np.exp(np.minimum((distance - 1) * 12, 50)))

    image = (0.35 + 0.3 * y)[..., None] * rng.uniform(0.5, 1.0, 3)
    layers = [
        (soft(((x - 0.5) / 0.34) ** 2 + ((y - 0.42) / 0.38) ** 2), (0.25, 0.17, 0.1)),  # hair
        (soft(((x - 0.5) / 0.27) ** 2 + ((y - 0.55) / 0.34) ** 2), (0.9, 0.72, 0.6)),  # face
        (soft(((x - 0.4) / 0.045) ** 2 + ((y - 0.5) / 0.025) ** 2), (0.15, 0.1, 0.1)),  # eyes
        (soft(((x - 0.6) / 0.045) ** 2 + ((y - 0.5) / 0.025) ** 2), (0.15, 0.1, 0.1)),
        (soft(((x - 0.5) / 0.09) ** 2 + ((y - 0.72) / 0.025) ** 2), (0.6, 0.2, 0.2)),  # mouth
    ]
    for mask, colour in layers:
        image = image * (1 - mask[..., None]) + mask[..., None] * np.array(colour)
    image = image * (0.9 + 0.1 * (1 - x))[..., None]  # light from the left
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


# -- measurement ---------------------------------------------------------------------------------------------
def measure(
    size: int,
    seconds: float,
    checkpoints: dict[str, str | os.PathLike],
    steps: int = 20,
    threads: int = 2,
    decode_batch_size: int = 32,
    warmup_seconds: float = WARMUP_SECONDS,
    seed: int = 0,
    device: str = "cpu",
    precision: str = "fp32",
    attention: str = "auto",
) -> dict[str, Any]:
    """One configuration in this process: loads the pipeline from ``checkpoints`` (`write_checkpoints`) onto
    ``device`` in ``precision``, generates ``warmup_seconds`` of speech once (unmeasured), then ``seconds``
    of speech and its mp4, timed per phase, with the peak memory of that run; ``attention`` is stage 3's
    temporal-attention backend (`set_attention_backend`). The thread count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(
            size,
            seconds,
            checkpoints,
            steps,
            threads,
            decode_batch_size,
            warmup_seconds,
            seed,
            device,
            precision,
            attention,
        )
    finally:
        torch.set_num_threads(previous)


def _measure(
    size: int,
    seconds: float,
    checkpoints: dict[str, str | os.PathLike],
    steps: int,
    threads: int,
    decode_batch_size: int,
    warmup_seconds: float,
    seed: int,
    device: str,
    precision: str,
    attention: str,
) -> dict[str, Any]:
    from dawn_lightning.models.audio_to_motion.temporal_attention import set_attention_backend
    from dawn_lightning.pipeline import DawnPipeline

    portrait = synthetic_portrait(size, seed)
    speech = speech_like(seconds, seed)
    warmup = speech_like(warmup_seconds, seed + 1) if warmup_seconds > 0 else None
    start = time.perf_counter()
    pipeline = DawnPipeline.from_checkpoints(
        checkpoints["motion"],
        checkpoints["pose_blink"],
        checkpoints["diffusion"],
        device=device,
        precision=precision,
        sampler={"num_steps": steps},
        decode_batch_size=decode_batch_size,
    )
    set_attention_backend(pipeline.diffusion, attention)
    row: dict[str, Any] = {
        "size": size,
        "seconds": seconds,
        "steps": steps,
        "threads": threads,
        "device": device,
        "precision": precision,
        "attention": attention,
        "decode_batch_size": decode_batch_size,
        "window": pipeline.window,
        "parameters": {
            name: sum(p.numel() for p in getattr(pipeline, name).parameters())
            for name in ("motion", "pose_blink", "diffusion")
        },
        "load_s": time.perf_counter() - start,
    }
    loaded = rss_mib()
    with tempfile.TemporaryDirectory(prefix="dawn-bench-generate-") as tmp:
        if warmup is not None:
            pipeline(portrait, warmup, seed=seed).save(Path(tmp) / "warmup.mp4")
        row["load_start"] = os.getloadavg()[0]
        before = rss_mib()
        reset = reset_peak()
        cpu_start, start = time.process_time(), time.perf_counter()
        video = pipeline(portrait, speech, seed=seed)
        clock = time.perf_counter()
        path = video.save(Path(tmp) / "out.mp4")
        encode = time.perf_counter() - clock
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        peak = peak_mib(reset)
        row["mp4_bytes"] = path.stat().st_size
    row["load_end"] = os.getloadavg()[0]
    frames = len(video)
    phases = {name: float(video.timings.get(name, 0.0)) for name in PHASES[:-1]} | {"encode": encode}
    row.update(
        {
            "frames": frames,
            "video_s": frames / FPS,
            "total_s": total,
            "s_per_video_s": total / (frames / FPS),
            "phases": phases,
            "other_s": max(total - sum(phases.values()), 0.0),
            "frames_finite": bool(np.isfinite(video.frames).all()),
            "cpu_s": cpu,
            "cpu_utilisation": cpu / (total * threads),
            "loaded_mib": loaded,
            "before_run_mib": before,
            "process_peak_mib": peak,
            "peak_mib": peak - loaded,
            "run_peak_mib": peak - before,
            "peak_from": "VmHWM (reset)" if reset else "ru_maxrss",
        }
    )
    return row


def linearity(rows: list[dict[str, Any]], slack_mib: float = MEMORY_SLACK_MIB) -> list[dict[str, Any]]:
    """Per size, the longest clip against the shortest: frames, time and working-memory ratios, the memory
    per extra second, and whether memory grew at most linearly (peak(long) <= frames ratio x peak(short) +
    ``slack_mib``)."""
    checks = []
    for size in dict.fromkeys(r["size"] for r in rows):
        measured = sorted(
            (r for r in rows if r["size"] == size and "total_s" in r), key=lambda r: r["frames"]
        )
        if len(measured) < 2 or measured[0]["frames"] == measured[-1]["frames"]:
            continue
        short, long = measured[0], measured[-1]
        frames_ratio = long["frames"] / short["frames"]
        bound = frames_ratio * short["peak_mib"] + slack_mib
        checks.append(
            {
                "size": size,
                "seconds": [short["seconds"], long["seconds"]],
                "frames_ratio": frames_ratio,
                "time_ratio": long["total_s"] / short["total_s"],
                "memory_ratio": long["peak_mib"] / max(short["peak_mib"], 1e-9),
                "process_memory_ratio": long["process_peak_mib"] / max(short["process_peak_mib"], 1e-9),
                "mib_per_video_s": (long["peak_mib"] - short["peak_mib"])
                / (long["video_s"] - short["video_s"]),
                "memory_bound_mib": bound,
                "linear": long["peak_mib"] <= bound,
            }
        )
    return checks


def generation(
    sizes=(64, 128),
    seconds=(10, 60),
    steps: int = 20,
    threads: int = 2,
    decode_batch_size: int = 32,
    warmup_seconds: float = WARMUP_SECONDS,
    isolate: bool = True,
    sampler: str = "ddim",
    guidance: float = 1.0,
    log=print,
) -> dict[str, Any]:
    """Every (size, seconds) configuration, one fresh process each (``isolate``), on random-weight
    checkpoints written once per size to a temporary folder, sampling with ``sampler`` ("ddim": DAWN's
    objective and sampler, eta 1; "flow_euler": the flow-matching objective) in ``steps`` steps at the
    classifier-free ``guidance`` scale (> 1 doubles the passes). A configuration whose stage-3 working memory
    is estimated not to fit in the available memory is skipped with a note."""
    objective = "flow" if sampler.startswith("flow") else "diffusion"
    settings = {"name": sampler, "num_steps": steps, "guidance_scale": guidance}
    if sampler == "ddim":
        settings |= {"eta": 1.0, "dynamic_threshold": None}
    rows = []
    run = functools.partial(run_isolated, measure) if isolate else measure
    with tempfile.TemporaryDirectory(prefix="dawn-bench-checkpoints-") as tmp:
        for size in sizes:
            start = time.perf_counter()
            written = write_checkpoints(size, tmp, steps, objective=objective, sampler=settings)
            checkpoints = {k: str(v) for k, v in written.items()}
            log(f"generate: {size} px checkpoints written ({time.perf_counter() - start:.0f} s)")
            for length in seconds:
                frames = int(round(length * FPS))
                reason = skip_reason(size, "banded", frames)
                if reason is not None:
                    log(f"generate: {size} px, {length} s: {reason}")
                    rows.append({"size": size, "seconds": length, "frames": frames, "note": reason})
                    continue
                start = time.perf_counter()
                row = measured_row(
                    run,
                    {"size": size, "seconds": length, "frames": frames},
                    size=size,
                    seconds=length,
                    checkpoints=checkpoints,
                    steps=steps,
                    threads=threads,
                    decode_batch_size=decode_batch_size,
                    warmup_seconds=warmup_seconds,
                )
                row["isolated"] = isolate
                rows.append(row)
                log(
                    f"generate: {size} px, {length} s: "
                    + (
                        f"{row['total_s']:.1f} s ({row['s_per_video_s']:.2f} s / s of video), "
                        f"working peak {row['peak_mib']:.0f} MiB"
                        if "total_s" in row
                        else row["note"]
                    )
                    + f" ({time.perf_counter() - start:.0f} s)"
                )
    return {
        "torch": torch.__version__,
        "threads": threads,
        "steps": steps,
        "sampler": settings,
        "passes": steps * (2 if guidance != 1.0 else 1),
        "precision": "fp32",
        "device": "cpu",
        "decode_batch_size": decode_batch_size,
        "warmup_seconds": warmup_seconds,
        "audio_features": "logmel, 80 wide (the paper's HuBERT: 1024 wide)",
        "memory_slack_mib": MEMORY_SLACK_MIB,
        "rows": rows,
        "linearity": linearity(rows),
    }


# -- report --------------------------------------------------------------------------------------------------
def sampler_name(results: dict[str, Any]) -> str:
    """E.g. "ddim 20 steps (20 passes)" (results of before the sampler was recorded: DDIM)."""
    sampler = results.get("sampler", {"name": "ddim", "guidance_scale": 1.0})
    guidance = sampler.get("guidance_scale", 1.0)
    name = sampler["name"] + (f" with guidance {guidance:g}" if guidance != 1.0 else "")
    return f"{name}, {results['steps']} steps ({results.get('passes', results['steps'])} passes)"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """The rows and the linearity checks as markdown tables, with the notes that qualify them."""
    steps = results["steps"]
    lines = [
        "| size | speech s | frames | total s | s / s of video | audio features s | stage 2 s | "
        f"stage 3 ({steps} steps) s | stage 1 s | encode s | other s | peak MiB (working) | of which the run "
        "| process peak MiB | load start / end, CPU use |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        head = f"| {row['size']} px | {row['seconds']:g} | {row['frames']} |"
        if "total_s" not in row:
            lines.append(f"{head} {row.get('note', '')} |" + " |" * 11)
            continue
        phases = " | ".join(_seconds(row["phases"][name]) for name in PHASES)
        lines.append(
            f"{head} {row['total_s']:.1f} | {row['s_per_video_s']:.2f} | {phases} | "
            f"{_seconds(row['other_s'])} | "
            f"{row['peak_mib']:.0f} | {row['run_peak_mib']:.0f} | {row['process_peak_mib']:.0f} | "
            f"{row['load_start']:.1f} / {row['load_end']:.1f}, {row['cpu_utilisation']:.0%} |"
        )
    if results["linearity"]:
        slack = results.get("memory_slack_mib", MEMORY_SLACK_MIB)
        lines += [
            "",
            "| size | speech s | frames ratio | time ratio | working peak ratio (process) | MiB per extra s "
            f"of video | memory linear (≤ frames ratio × short + {slack:.0f} MiB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for check in results["linearity"]:
            short, long = check["seconds"]
            verdict = "yes" if check["linear"] else "NO"
            lines.append(
                f"| {check['size']} px | {short:g} → {long:g} | {check['frames_ratio']:.1f} | "
                f"{check['time_ratio']:.2f} | {check['memory_ratio']:.2f} "
                f"({check['process_memory_ratio']:.2f}) | {check['mib_per_video_s']:.1f} | "
                f"{verdict} (bound {check['memory_bound_mib']:.0f} MiB) |"
            )
    lines += [
        "",
        f"Random-weight networks built from the model configs (64 px: {', '.join(SIZES[64].values())}; "
        f"128 px: {', '.join(SIZES[128].values())}), {results['precision']} on the {results['device']}, "
        f"{results['threads']} torch threads, {sampler_name(results)}, stage-1 decoding "
        f"{results['decode_batch_size']} frames a call, one fresh process per row after a "
        f"{results['warmup_seconds']:g} s warm-up generation. Audio features: {results['audio_features']}; "
        "HuBERT widens only the first layers of stages 2 and 3, and its own extraction time is not included. "
        "Peak: the resident-set high-water mark of the measured generation and encoding; working = it minus "
        "the resident set after loading the pipeline (so it holds the warm-up's lasting costs: imports, "
        "caches); of which the run = it minus the resident set just before the measured run. Encoding "
        "(libx264 through PyAV) uses its own threads. CPU use: the process's CPU time / (wall time × "
        "threads); well below 100% (or a load start above the thread count) means other work shared the "
        "cores and the times are not comparable.",
    ]
    return "\n".join(lines)
