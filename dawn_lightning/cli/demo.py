"""`dawn-demo` (`make demo`): the whole method on the synthetic data set, on a CPU, from nothing to a video.

Steps: write the synthetic store, train stage 1, stage 2 and stage 3 (curriculum A only: on the CPU budget,
curriculum B after it made the mouth stop following the speech; see the README), then generate the video of a
held-out identity (a test clip's first frame as the portrait, the clip's speech) and write
``experiments/demo/``: demo.mp4, contact_sheet.png (truth and generated frames, and their mouths close up),
report.md and metrics.json. The report scores that clip and 3 more test clips with 2 seeds each against the
demo's goals (`GOALS`). A step whose output exists is reused (``--redo`` forgets that); the report keeps the
time each step took.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dawn_lightning.allocator import keep_freed_memory
from dawn_lightning.checkpoints import latest_checkpoint

log = logging.getLogger("dawn_lightning.demo")
CLIPS, SEEDS = 4, 2  # test clips scored (the first is the demo's) and seeds per clip
MOUTH_MARGIN = 0.25  # the mouth box grown by this share of its size on each side, as mouth_darkness does
# figure -> (what it is, goal as text, test of the generated value g against the truth t)
GOALS = {
    "mouth_motion": (
        "mouth darkness std (how far it opens)",
        "at least 0.6x the truth's",
        lambda g, t: g >= 0.6 * t,
    ),
    "lip_sync": ("lip-sync proxy r(mouth darkness, speech)", "at least 0.8", lambda g, t: g >= 0.8),
    "blinks": ("blinks per second", "within 30 % of the truth", lambda g, t: abs(g - t) <= 0.3 * t),
    "head": ("head rotation std (degrees)", "within 40 % of the truth", lambda g, t: abs(g - t) <= 0.4 * t),
    "frame_change": (
        "frame-to-frame change (0-255)",
        "within 20 % of the truth",
        lambda g, t: abs(g - t) <= 0.2 * t,
    ),
}


def _steps(store: Path, experiments: Path) -> list[tuple[str, list[str], Path]]:
    """(name, command, the file that exists once the step is done) of every step before generation."""
    train = [str(Path(sys.executable).with_name("dawn-train"))]
    common = [f"data.store_dir={store}", f"paths.experiments_dir={experiments}"]
    stages = {
        "stage1": "stage 1 (motion autoencoder)",
        "stage2": "stage 2 (pose and blink)",
        "stage3a": "stage 3 A (20-frame clips)",
    }
    synthetic = [str(Path(sys.executable).with_name("dawn-synthetic")), f"data.store_dir={store}"]
    return [("synthetic data", synthetic, store / "index.json")] + [
        (name, [*train, f"experiment={task}", *common], latest_checkpoint(experiments, task))
        for task, name in stages.items()
    ]


def run_steps(store: Path, experiments: Path, timings: dict, redo: bool) -> None:
    for name, command, output in _steps(store, experiments):
        if output.exists() and not redo:
            log.info("%s: reusing %s", name, output)
            timings.setdefault(name, {"seconds": None})["reused"] = True
            continue
        log.info("%s: %s", name, " ".join(command))
        started = time.perf_counter()
        subprocess.run(command, check=True)
        timings[name] = {"seconds": round(time.perf_counter() - started, 1), "reused": False}


def generate(store_dir: Path, experiments: Path, out: Path, seed: int, timings: dict) -> dict:
    from PIL import Image

    from dawn_lightning.data.store import ClipStore
    from dawn_lightning.metrics.mouth_sync import frame_change, mouth_audio_correlation
    from dawn_lightning.pipeline import DawnPipeline, PortraitState

    store = ClipStore(store_dir)
    clips = store.split("test")[:CLIPS]
    clip = clips[0]
    reader = store.reader(clip)
    truth = reader.frames(range(clip.num_frames))
    signals = reader.signals
    portrait = out / "portrait.png"
    Image.fromarray(truth[0]).save(portrait)
    # The synthetic store knows each portrait's face box, pose and blink: they stand in for a face backend.
    current: dict[str, PortraitState] = {}

    def known_state(signals: dict) -> PortraitState:
        return PortraitState(*(torch.from_numpy(signals[k][0]) for k in ("face_box", "pose", "blink")))

    current["state"] = known_state(signals)
    # stage 3: the newer of curriculum A's and B's, as `make generate` and `make evaluate` pick it
    pipeline = DawnPipeline.from_run_dirs(experiments, initial_state=lambda image: current["state"])
    started = time.perf_counter()
    video = pipeline(portrait, reader.dir / "audio.wav", seed=seed)
    video.save(out / "demo.mp4")
    timings["generate (portrait + speech -> mp4)"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "reused": False,
        "phases": video.timings,
    }
    count = min(len(video), len(truth))
    mouth_box = signals["mouth_box"][0]
    write_sheet(truth[:count], video.frames[:count], mouth_box, out / "contact_sheet.png")
    generated, real = video.frames[:count], truth[:count]
    reconstructed = stage1_reconstruction(pipeline.motion, truth)

    runs = []
    for k, scored in enumerate(clips):
        scored_reader = store.reader(scored)
        current["state"] = known_state(scored_reader.signals)
        for draw in range(SEEDS):
            if k == 0 and draw == 0:
                run = score(video, truth, signals)  # the demo's own video
            else:
                frames = scored_reader.frames(range(scored.num_frames))
                made = pipeline(frames[0], scored_reader.dir / "audio.wav", seed=seed + draw)
                run = score(made, frames, scored_reader.signals)
            runs.append({"clip": scored.clip_id, "seed": seed + draw} | run)

    def change(frames: np.ndarray) -> float:
        return round(frame_change(frames), 2)

    return {
        "clip": clip.clip_id,
        "stage3_checkpoint": pipeline.names["diffusion"],
        "phases": video.timings,
        "frames": len(video),
        "seconds_of_video": round(video.seconds, 2),
        "mouth_audio_corr_generated": round(mouth_audio_correlation(generated, mouth_box, video.audio), 3),
        "mouth_audio_corr_truth": round(mouth_audio_correlation(real, mouth_box, video.audio), 3),
        "mouth_audio_corr_stage1": round(mouth_audio_correlation(reconstructed, mouth_box, video.audio), 3),
        "frame_change_generated": change(generated),
        "frame_change_truth": change(real),
        "frame_change_stage1": change(reconstructed),
        "pose_std_deg_generated": round(float(video.pose[:count, :3].std(0).mean()), 2),
        "pose_std_deg_truth": round(float(signals["pose"][:count, :3].std(0).mean()), 2),
        "blinks_per_s_generated": round(runs[0]["blinks_generated"] / runs[0]["seconds"], 2),
        "blinks_per_s_truth": round(runs[0]["blinks_truth"] / runs[0]["seconds"], 2),
        "runs": runs,
        "goals": judge(runs),
    }


def score(video, truth: np.ndarray, signals: dict) -> dict:
    """The goal figures of one generated video against its true clip (frames and signals of the store)."""
    from dawn_lightning.metrics.motion_stats import blink_onsets
    from dawn_lightning.metrics.mouth_sync import frame_change, mouth_audio_correlation, mouth_motion

    count = min(len(video), len(truth))
    generated, real, box = video.frames[:count], truth[:count], signals["mouth_box"][0]
    return {
        "seconds": count / video.fps,
        "mouth_motion_generated": mouth_motion(generated, box),
        "mouth_motion_truth": mouth_motion(real, box),
        "lip_sync_generated": mouth_audio_correlation(generated, box, video.audio),
        "lip_sync_truth": mouth_audio_correlation(real, box, video.audio),
        "blinks_generated": int(blink_onsets(torch.from_numpy(video.blink[:count])).sum()),
        "blinks_truth": int(blink_onsets(torch.from_numpy(signals["blink"][:count])).sum()),
        "head_generated": float(video.pose[:count, :3].std(0).mean()),
        "head_truth": float(signals["pose"][:count, :3].std(0).mean()),
        "frame_change_generated": frame_change(generated),
        "frame_change_truth": frame_change(real),
    }


def judge(runs: list[dict]) -> dict:
    """Each goal's figure over all runs, generated and truth (blinks: counted over all the seconds; the rest:
    means of the runs), and whether the goal is met."""
    seconds = sum(r["seconds"] for r in runs)
    verdicts = {}
    for name, (_, goal, test) in GOALS.items():
        if name == "blinks":
            g, t = (sum(r[f"blinks_{side}"] for r in runs) / seconds for side in ("generated", "truth"))
        else:
            g, t = (float(np.mean([r[f"{name}_{side}"] for r in runs])) for side in ("generated", "truth"))
        verdicts[name] = {
            "generated": round(g, 4),
            "truth": round(t, 4),
            "goal": goal,
            "met": bool(test(g, t)),
        }
    return verdicts


def mouth_crops(frames: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The mouth box (grown by MOUTH_MARGIN) of each frame, enlarged to the frame's size: (N, H, W, 3)."""
    from PIL import Image

    n, h, w, _ = frames.shape
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    dx, dy = (x1 - x0) * MOUTH_MARGIN, (y1 - y0) * MOUTH_MARGIN
    left, right = int(max(0.0, x0 - dx) * w), int(np.ceil(min(1.0, x1 + dx) * w))
    top, bottom = int(max(0.0, y0 - dy) * h), int(np.ceil(min(1.0, y1 + dy) * h))
    return np.stack(
        [np.asarray(Image.fromarray(f[top:bottom, left:right]).resize((w, h), Image.NEAREST)) for f in frames]
    )


def write_sheet(truth: np.ndarray, generated: np.ndarray, mouth_box: np.ndarray, path: Path) -> None:
    """10 evenly spaced frames: truth, generated, then the same frames' mouths close up (truth, generated)."""
    from dawn_lightning.data.contact_sheet import write_contact_sheet

    picks = np.linspace(0, len(truth) - 1, 10).round().astype(int)
    rows = [truth[picks], generated[picks], mouth_crops(truth[picks], mouth_box)]
    rows.append(mouth_crops(generated[picks], mouth_box))
    names = ("truth", "gen", "truth mouth", "gen mouth")
    write_contact_sheet(
        np.concatenate(rows),
        path,
        columns=len(picks),
        labels=[f"{name} {i}" if name in ("truth", "gen") else name for name in names for i in picks],
    )


@torch.no_grad()
def stage1_reconstruction(motion, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The true clip (T, H, W, 3) uint8 re-rendered by stage 1 from its first frame and its own motion: the
    best any stage-3 motion can look through this stage-1 model."""
    from dawn_lightning.data.transforms import frames_to_tensor

    clip = frames_to_tensor(frames)
    source = clip[:1]
    out = []
    for start in range(0, len(clip), batch_size):
        driving = clip[start : start + batch_size]
        flow = motion.motion(source.expand(len(driving), -1, -1, -1), driving)
        out.append(motion.decode(source, flow["grid"], flow["occlusion"]).clamp(0, 1))
    return (torch.cat(out) * 255).round().byte().permute(0, 2, 3, 1).numpy()


REPORT = """# dawn-lightning demo

Held-out synthetic identity `{clip}`: its first frame as the portrait and its speech ({seconds_of_video} s,
{frames} frames) -> `demo.mp4`. `contact_sheet.png`: rows of the real clip, the generated one, then both
mouths close up. Generated with the {stage3_checkpoint}.

## Goals ({runs} videos: {clips} test clips x {seeds} seeds, the first one the demo's)

| figure | generated | truth | goal | met |
|---|---|---|---|---|
{goals}

## Steps (seconds on this machine; "reused" = done by an earlier run)

| step | seconds |
|---|---|
{steps}

Generation by phase (seconds): {phases}.

## The demo's clip

"stage 1 ceiling": the true clip re-rendered by stage 1 from its own motion, the best stage 3 can reach.

| | generated | truth | stage 1 ceiling |
|---|---|---|---|
| lip-sync proxy: r(mouth darkness, speech) | {mouth_audio_corr_generated} | {mouth_audio_corr_truth} | \
{mouth_audio_corr_stage1} |
| frame-to-frame change, mean abs (0-255; 0 = frozen) | {frame_change_generated} | {frame_change_truth} | \
{frame_change_stage1} |
| head rotation std over time (degrees) | {pose_std_deg_generated} | {pose_std_deg_truth} | |
| blinks per second | {blinks_per_s_generated} | {blinks_per_s_truth} | |
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dawn-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("data/synthetic64"))
    parser.add_argument(
        "--experiments", type=Path, default=Path(os.environ.get("DAWN_ROOT", ".")) / "experiments"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: <experiments>/demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redo", action="store_true", help="retrain every stage even if a checkpoint exists")
    args = parser.parse_args(argv)
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    out = args.out or args.experiments / "demo"
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() and not args.redo else {}
    run_steps(args.store, args.experiments, timings, args.redo)
    timings_path.write_text(json.dumps(timings, indent=1))
    metrics = generate(args.store, args.experiments, out, args.seed, timings)
    timings_path.write_text(json.dumps(timings, indent=1))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    steps = "\n".join(
        f"| {name} | {entry['seconds'] if entry['seconds'] is not None else '?'}"
        f"{' (reused)' if entry.get('reused') else ''} |"
        for name, entry in timings.items()
    )
    phases = ", ".join(f"{k} {v:.1f}" for k, v in metrics["phases"].items())
    goals = "\n".join(
        f"| {GOALS[name][0]} | {v['generated']:.3g} | {v['truth']:.3g} | {v['goal']} | "
        f"{'yes' if v['met'] else 'NO'} |"
        for name, v in metrics["goals"].items()
    )
    fields = {k: v for k, v in metrics.items() if k not in ("phases", "goals", "runs")}
    runs = len(metrics["runs"])
    clips = len({r["clip"] for r in metrics["runs"]})
    report = REPORT.format(
        steps=steps, phases=phases, goals=goals, runs=runs, clips=clips, seeds=SEEDS, **fields
    )
    (out / "report.md").write_text(report)
    log.info("wrote %s: demo.mp4, contact_sheet.png, report.md", out)
