"""Sampling benchmark (`dawn-bench sampling`): what each way of sampling stage 3 costs and gives.

For every setting (a stage-3 checkpoint and its sampler), `dawn-evaluate`'s protocol on a store split: each
clip generated from its first frame and speech, timed (seconds per second of video, with ``threads`` torch
threads) and scored (the lip-sync proxy, the project SyncNet's LSE-C and share of videos in sync, mouth
motion, frame change and random-feature FVD16). Settings whose checkpoint is not given are left out: the
diffusion teacher (`experiment=stage3a_diffusion`: DDIM 20 steps with guidance, DAWN's sampler) and its
few-step samplers, the flow-matching stage 3 (`experiment=stage3a`, the default at 64 px) with Euler and Heun
steps, and a guidance-distilled student (`experiment=stage3a_distill`) with 1 to 4 Euler steps.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence

GUIDANCE = 1.5  # the demo model's guidance (docs/stage3-audio-to-motion.md)
# (label, which checkpoint, sampler settings)
SETTINGS = [
    ("teacher: DDIM 20", "diffusion", {"name": "ddim", "num_steps": 20}),
    ("DDIM 10", "diffusion", {"name": "ddim", "num_steps": 10}),
    ("DDIM 5", "diffusion", {"name": "ddim", "num_steps": 5}),
    ("DPM-Solver++ 10", "diffusion", {"name": "dpm_solver", "num_steps": 10}),
    ("DPM-Solver++ 5", "diffusion", {"name": "dpm_solver", "num_steps": 5}),
    ("flow, Euler 10", "flow", {"name": "flow_euler", "num_steps": 10}),
    ("flow, Euler 8", "flow", {"name": "flow_euler", "num_steps": 8}),
    ("flow, Euler 4", "flow", {"name": "flow_euler", "num_steps": 4}),
    ("flow, Heun 4", "flow", {"name": "flow_heun", "num_steps": 4}),
    ("flow, Euler 2", "flow", {"name": "flow_euler", "num_steps": 2}),
    # guidance folded into the student: one pass a step
    ("distilled, Euler 4", "distilled", {"name": "flow_euler", "num_steps": 4, "guidance_scale": 1.0}),
    ("distilled, Euler 2", "distilled", {"name": "flow_euler", "num_steps": 2, "guidance_scale": 1.0}),
    ("distilled, Euler 1", "distilled", {"name": "flow_euler", "num_steps": 1, "guidance_scale": 1.0}),
]
COLUMNS = {  # result key -> (metrics key, digits)
    "passes": (None, 0),
    "s_per_s": ("seconds_per_output_second", 2),
    "lip_proxy": ("lip_proxy_generated", 3),
    "lse_c": ("lse_c_generated", 3),
    "in_sync": ("in_sync_generated", 2),
    "mouth_motion": ("mouth_motion_generated", 4),
    "frame_change": ("frame_change_generated", 2),
    "fvd16": ("fvd16", 4),
}
TRUTH = {"lip_proxy": "lip_proxy_truth", "lse_c": "lse_c_truth", "in_sync": "in_sync_truth"}
TRUTH |= {"mouth_motion": "mouth_motion_truth", "frame_change": "frame_change_truth"}


def sampling_benchmark(
    checkpoints: dict[str, str | None],
    run: str,
    store: str,
    split: str = "test",
    max_clips: int | None = None,
    threads: int = 2,
    guidance: float = GUIDANCE,
    log: Callable[[str], None] = print,
    only: Sequence[str] | None = None,
    extra: Sequence[str] = (),
) -> dict:
    """One row per setting whose checkpoint (``checkpoints["diffusion"]``, ``["flow"]``, ``["distilled"]``) is
    given (and whose label is in ``only``, when given), and the truth's row; ``run`` holds the stage-1 and
    stage-2 checkpoints (its newest); ``extra``: more `dawn-evaluate` overrides (checkpoints, metrics)."""
    import torch

    from dawn_lightning.benchmarks.data import cpu_model
    from dawn_lightning.config import compose
    from dawn_lightning.evaluation import evaluate_run

    torch.set_num_threads(threads)
    rows, truth = [], None
    for label, kind, sampler in SETTINGS:
        if not checkpoints.get(kind) or (only is not None and label not in only):
            continue
        settings = {"guidance_scale": guidance} | sampler
        with tempfile.TemporaryDirectory() as out:
            overrides = [
                f"run={run}",
                f"checkpoints.diffusion={checkpoints[kind]}",
                f"data.store_dir={store}",
                f"split={split}",
                f"max_clips={'null' if max_clips is None else max_clips}",
                f"out={out}",
                "save_videos=false",
                *(f"sampler.{k}={v}" for k, v in settings.items()),
                *extra,
            ]
            record = evaluate_run(compose("evaluate", overrides))
        metrics = {k: v["value"] for k, v in record["metrics"].items() if isinstance(v, dict)}
        row = {"setting": label, "checkpoint": kind, "sampler": settings}
        for column, (key, digits) in COLUMNS.items():
            value = record["protocol"]["passes"] if key is None else metrics.get(key)
            row[column] = None if value is None else round(float(value), digits) if digits else int(value)
        rows.append(row)
        truth = truth or {c: round(float(metrics[k]), 4) for c, k in TRUTH.items() if k in metrics}
        log(f"sampling: {label}: " + ", ".join(f"{k} {row[k]}" for k in COLUMNS))
    return {
        "cpu": cpu_model(),
        "torch_threads": threads,
        "store": store,
        "split": split,
        "guidance_scale": guidance,
        "rows": rows,
        "truth": truth,
    }


def markdown(results: dict) -> str:
    lines = [
        f"CPU: {results['cpu']}, {results['torch_threads']} torch threads; {results['store']} "
        f"{results['split']} split; guidance {results['guidance_scale']} (distilled: folded in)\n",
        "| setting | passes | s per s of video | lip-sync proxy | LSE-C | in sync | mouth motion "
        "| frame change | FVD16 (random features) |",
        "|---" * 9 + "|",
    ]
    for row in results["rows"]:
        lines.append(f"| {row['setting']} | " + " | ".join(str(row[k]) for k in COLUMNS) + " |")
    truth = results.get("truth") or {}
    lines.append(
        "| ground truth | | | "
        + " | ".join(str(truth.get(k, "")) for k in ("lip_proxy", "lse_c", "in_sync", "mouth_motion"))
        + f" | {truth.get('frame_change', '')} | |"
    )
    return "\n".join(lines)
