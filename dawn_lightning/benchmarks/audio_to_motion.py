"""Stage-3 benchmark: the A2V-FDM denoiser's speed and memory against the number of frames F, with banded
(DAWN's |i - j| <= 40) and full temporal attention, at 64 px (the tiny CPU sizes of
``conf/model/audio_to_motion_64.yaml``) and 128 px (the paper's sizes,
``conf/model/audio_to_motion_128.yaml``), next to the reference implementation's figures on this machine
(``reference-perf-notes.md``).

Every configuration runs in a fresh process (multiprocessing, "spawn"), so that its peak memory is its own:
random weights (timing does not depend on them), fp32, batch 1, ``torch.set_num_threads(threads)``,
``torch.inference_mode()``. Peak memory is the process's resident-set high-water mark (VmHWM, reset just
before the first pass where Linux allows it; ``ru_maxrss`` elsewhere) minus the resident set after building
the model and inputs: the working memory of the passes and the sampling.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from typing import Any

import torch
from omegaconf import OmegaConf

from dawn_lightning.benchmarks.memory import (
    available_mib,
    measured_row,
    peak_mib,
    reset_peak,
    rss_mib,
    run_isolated,
)
from dawn_lightning.config import CONF_DIR
from dawn_lightning.diffusion.registry import make_sampler
from dawn_lightning.models.audio_to_motion.motion_diffusion import BLINK_DIM, POSE_DIM, MotionDiffusion

# Frame size -> model config, the input widths and the motion size of that size (DAWN at 128 px: HuBERT 1024,
# z_src 256, 32 x 32 motion).
SIZES: dict[int, dict[str, Any]] = {
    64: {"model": "audio_to_motion_64", "audio_dim": 80, "z_channels": 128, "motion": 16},
    128: {"model": "audio_to_motion_128", "audio_dim": 1024, "z_channels": 256, "motion": 32},
}
ATTENTIONS = ("banded", "full")

# The reference U-Net (dense scores with the band as a bias) at 128 px, fp32, 2 threads, on this machine:
# reference-perf-notes.md section 4.1, pooled median pass time; per-process median peak RSS and peak minus
# the RSS before the first call ("working").
REFERENCE_128: dict[int, dict[str, float]] = {
    100: {"pass_s": 9.924, "process_peak_mib": 3084, "peak_mib": 2105},
    200: {"pass_s": 29.619, "process_peak_mib": 5607, "peak_mib": 4520},
    400: {"pass_s": 94.872, "process_peak_mib": 15052, "peak_mib": 13750},
}
TARGET_SPEEDUP = {200: 3.0, 400: 10.0}  # issue 9, at the same architecture and precision
LINEARITY_LIMIT = 5.0  # time(400) / time(100) must stay within this

# Configurations with at least this many "pixel-frames" (128 x 128 x 200) get one timed pass only.
BIG_WORK = 128 * 128 * 200
# Fraction of the available memory that the estimated peak of a configuration may take before it is skipped.
MEMORY_MARGIN = 0.9


def model_sizes(size: int) -> dict[str, Any]:
    """``net.unet`` of the model config of ``size`` px: audio_to_motion_64's overrides merged onto
    audio_to_motion_128 (nothing resolved; the unet block holds no interpolation)."""
    config = OmegaConf.load(CONF_DIR / "model" / "audio_to_motion_128.yaml").net.unet
    if SIZES[size]["model"] != "audio_to_motion_128":
        overrides = OmegaConf.load(CONF_DIR / "model" / f"{SIZES[size]['model']}.yaml").net.unet
        config = OmegaConf.merge(config, overrides)
    return OmegaConf.to_container(config)


def build(size: int, attention: str, frames: int, seed: int = 0) -> tuple[MotionDiffusion, dict]:
    """The random-weight network of ``size`` px with ``attention`` "banded" (the config's window) or "full",
    and inputs for F = ``frames``: {x_t, t, context, audio, pose, blink}."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    torch.manual_seed(seed)
    unet = model_sizes(size)
    if attention == "full":
        unet["window"] = None
    spec = SIZES[size]
    net = MotionDiffusion(spec["audio_dim"], spec["z_channels"], unet).eval()
    h = spec["motion"]
    context_channels = spec["z_channels"] + net.config["face_channels"]
    inputs = {
        "x_t": torch.randn(1, 3, frames, h, h),
        "t": torch.tensor([952]),  # the first DDIM step of 20, as the reference's measurements
        "context": torch.randn(1, context_channels, h, h),
        "audio": torch.randn(1, frames, spec["audio_dim"]),
        "pose": torch.randn(1, frames, POSE_DIM),
        "blink": torch.randn(1, frames, BLINK_DIM),
    }
    return net, inputs


def measure(
    size: int,
    attention: str,
    frames: int,
    steps: int = 20,
    threads: int = 2,
    repeats: int = 3,
    sample: bool = True,
    warmup: int = 1,
) -> dict[str, Any]:
    """One configuration in this process: the median of ``repeats`` denoiser passes after ``warmup``, then
    (``sample``) one full ``steps``-step DDIM sampling (eta 1, dynamic thresholding 0.9 as the configs'), and
    the peak memory of all of it above the memory after building the model and inputs. The 1-minute load
    average at the start and the end, and the CPU time of the timed passes over their wall time x
    ``threads`` (``cpu_utilisation``, about 1 on a quiet machine), show whether other work disturbed it.
    The thread count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(size, attention, frames, steps, threads, repeats, sample, warmup)
    finally:
        torch.set_num_threads(previous)


def _measure(
    size: int, attention: str, frames: int, steps: int, threads: int, repeats: int, sample: bool, warmup: int
) -> dict[str, Any]:
    net, inputs = build(size, attention, frames)
    x_t, t = inputs.pop("x_t"), inputs.pop("t")
    row: dict[str, Any] = {
        "size": size,
        "attention": attention,
        "window": net.unet.config["window"],
        "frames": frames,
        "threads": threads,
        "parameters": sum(p.numel() for p in net.parameters()),
        "load_start": os.getloadavg()[0],
    }
    with torch.inference_mode():
        baseline = rss_mib()
        reset = reset_peak()
        for _ in range(warmup):
            net(x_t, t, **inputs)
        times = []
        cpu_start = time.process_time()
        for _ in range(repeats):
            start = time.perf_counter()
            net(x_t, t, **inputs)
            times.append(time.perf_counter() - start)
        row["passes"] = repeats
        row["cpu_utilisation"] = (time.process_time() - cpu_start) / (sum(times) * threads)
        row["pass_s"] = statistics.median(times)
        row["pass_ms_per_frame"] = 1000 * row["pass_s"] / frames
        row["steps"] = steps
        if sample:
            sampler = make_sampler("ddim", net.schedule, net.prediction, num_steps=steps, eta=1.0)
            generator = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            out = net.sample(sampler, dynamic_threshold=0.9, generator=generator, **inputs)
            row["sampling_s"] = time.perf_counter() - start
            row["sampling_finite"] = bool(torch.isfinite(out).all())
        else:
            row["sampling_s"] = steps * row["pass_s"]
        row["sampling_measured"] = sample
    row["load_end"] = os.getloadavg()[0]
    peak = peak_mib(reset)
    row["baseline_mib"] = baseline
    row["process_peak_mib"] = peak
    row["peak_mib"] = peak - baseline
    row["peak_from"] = "VmHWM (reset)" if reset else "ru_maxrss"
    return row


def estimated_peak_mib(size: int, attention: str, frames: int) -> float:
    """A rough upper bound of the working memory (MiB): 8 MiB per frame at 128 px, scaling with the motion
    cells and the width, plus, with full attention, 2.5 times the F x F scores of the top level (h * w tokens
    x heads x 4 bytes; measured at 64 px, F = 200: 2.3 times)."""
    pixels = (SIZES[size]["motion"] / 32) ** 2 * model_sizes(size)["dim"] / 64
    dense = 0.0
    if attention == "full":
        heads = model_sizes(size)["attn_heads"]
        dense = 2.5 * SIZES[size]["motion"] ** 2 * heads * frames**2 * 4 / 2**20
    return 8 * pixels * frames + dense


def skip_reason(size: int, attention: str, frames: int) -> str | None:
    """Why a configuration is not run (its estimated peak would not fit in the available memory), or None."""
    available = available_mib()
    estimate = estimated_peak_mib(size, attention, frames)
    if available is not None and estimate > MEMORY_MARGIN * available:
        return (
            f"skipped: estimated peak {estimate / 1024:.1f} GiB > {MEMORY_MARGIN:.0%} of the "
            f"{available / 1024:.1f} GiB available"
        )
    return None


def _with_reference(row: dict[str, Any]) -> dict[str, Any]:
    reference = REFERENCE_128.get(row["frames"]) if row["size"] == 128 else None
    if reference is not None and "pass_s" in row:
        row["ref_pass_s"] = reference["pass_s"]
        row["ref_peak_mib"] = reference["peak_mib"]
        row["ref_process_peak_mib"] = reference["process_peak_mib"]
        row["speedup"] = reference["pass_s"] / row["pass_s"]
        row["memory_ratio"] = reference["peak_mib"] / max(row["peak_mib"], 1e-9)
        if row["frames"] in TARGET_SPEEDUP:
            row["target_speedup"] = TARGET_SPEEDUP[row["frames"]]
            row["target_met"] = row["speedup"] >= TARGET_SPEEDUP[row["frames"]]
    return row


def linearity(rows: list[dict[str, Any]], low: int = 100, high: int = 400) -> list[dict[str, Any]]:
    """time(high) / time(low) and peak(high) / peak(low) per size and attention (linear: high / low = 4)."""
    measured = {(r["size"], r["attention"], r["frames"]): r for r in rows if "pass_s" in r}
    checks = []
    for size, attention in dict.fromkeys((r["size"], r["attention"]) for r in rows):
        a, b = measured.get((size, attention, low)), measured.get((size, attention, high))
        if a is None or b is None:
            continue
        ratio = b["pass_s"] / a["pass_s"]
        checks.append(
            {
                "size": size,
                "attention": attention,
                "frames": [low, high],
                "time_ratio": ratio,
                "memory_ratio": b["peak_mib"] / max(a["peak_mib"], 1e-9),
                "linear": ratio <= LINEARITY_LIMIT,
            }
        )
    return checks


def stage3(
    sizes=(64, 128),
    frames=(50, 100, 200, 400),
    attentions=ATTENTIONS,
    steps: int = 20,
    threads: int = 2,
    repeats: int = 3,
    sample_sizes=(64,),
    isolate: bool = True,
    log=print,
) -> dict[str, Any]:
    """Every (size, attention, F) configuration, one process each; full sampling measured at
    ``sample_sizes`` and estimated as ``steps`` x the pass time elsewhere. Configurations of at least
    128 x 128 x 200 pixel-frames time one pass (after the warm-up) instead of ``repeats``."""
    rows = []
    run = functools.partial(run_isolated, measure) if isolate else measure
    for size in sizes:
        if size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, got {size}")
        for attention in attentions:
            for f in frames:
                reason = skip_reason(size, attention, f)
                if reason is not None:
                    log(f"stage3: {size} px, {attention}, F={f}: {reason}")
                    rows.append({"size": size, "attention": attention, "frames": f, "note": reason})
                    continue
                big = size * size * f >= BIG_WORK
                kwargs = {
                    "size": size,
                    "attention": attention,
                    "frames": f,
                    "steps": steps,
                    "threads": threads,
                    "repeats": 1 if big else repeats,
                    "sample": size in sample_sizes,
                }
                start = time.perf_counter()
                row = measured_row(run, {"size": size, "attention": attention, "frames": f}, **kwargs)
                row["isolated"] = isolate
                row = _with_reference(row)
                rows.append(row)
                log(
                    f"stage3: {size} px, {attention}, F={f}: "
                    + (
                        f"{row['pass_s']:.3f} s/pass, peak {row['peak_mib']:.0f} MiB"
                        if "pass_s" in row
                        else row["note"]
                    )
                    + f" ({time.perf_counter() - start:.0f} s)"
                )
    return {
        "torch": torch.__version__,
        "threads": threads,
        "steps": steps,
        "precision": "fp32",
        "rows": rows,
        "linearity": linearity(rows),
        "reference_128": {str(k): v for k, v in REFERENCE_128.items()},
        "reference_source": "reference-perf-notes.md section 4.1 (DAWN-pytorch 76c44b8, dense U-Net, fp32, "
        "2 threads, this machine)",
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The rows, the linearity checks and the reference comparison as markdown tables."""
    steps = results["steps"]
    lines = [
        f"| size | attention | F | timed passes | s / pass | ms / frame | {steps}-step DDIM s | peak MiB "
        "(working) | process peak MiB | reference s / pass | speed-up | reference peak MiB (working / "
        "process) | load start / end, CPU use |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        head = f"| {row['size']} px | {row['attention']} | {row['frames']} |"
        if "pass_s" not in row:
            lines.append(f"{head} {row.get('note', '')} |" + " |" * 9)
            continue
        sampling = _fmt(row["sampling_s"], 1)
        if not row["sampling_measured"]:
            sampling = f"≈ {sampling} (est. {steps} × pass)"
        reference = ""
        speedup = ""
        if "ref_pass_s" in row:
            reference = _fmt(row["ref_pass_s"], 1)
            speedup = f"{row['speedup']:.1f}×"
            if "target_speedup" in row:
                speedup += (
                    f" (target ≥ {row['target_speedup']:.0f}×: {'met' if row['target_met'] else 'NOT met'})"
                )
        ref_peak = (
            f"{row['ref_peak_mib']:.0f} / {row['ref_process_peak_mib']:.0f}" if "ref_peak_mib" in row else ""
        )
        lines.append(
            f"{head} {row['passes']} | {_fmt(row['pass_s'], 3)} | {_fmt(row['pass_ms_per_frame'], 1)} | "
            f"{sampling} | {_fmt(row['peak_mib'], 0)} | {_fmt(row['process_peak_mib'], 0)} | {reference} | "
            f"{speedup} | {ref_peak} | {row['load_start']:.1f} / {row['load_end']:.1f}, "
            f"{row['cpu_utilisation']:.0%} |"
        )
    if results["linearity"]:
        lines += [
            "",
            f"| size | attention | time(400) / time(100) (linear: 4, limit {LINEARITY_LIMIT:.0f}) | "
            "peak(400) / peak(100) |",
            "|---|---|---|---|",
        ]
        for check in results["linearity"]:
            verdict = "ok" if check["linear"] else "NOT linear"
            lines.append(
                f"| {check['size']} px | {check['attention']} | {check['time_ratio']:.2f} ({verdict}) | "
                f"{check['memory_ratio']:.2f} |"
            )
    lines += [
        "",
        f"Reference ({results['reference_source']}): "
        + ", ".join(
            f"F={f}: {r['pass_s']:.1f} s / pass, peak {r['process_peak_mib'] / 1024:.1f} GiB"
            for f, r in REFERENCE_128.items()
        )
        + ". DDIM estimates are the pass time × steps (the sampler's own arithmetic is negligible). "
        "CPU use: the timed passes' CPU time / (wall time × threads); well below 100% (or a load start "
        "above the thread count) means other work shared the cores and the times are not comparable.",
    ]
    return "\n".join(lines)
