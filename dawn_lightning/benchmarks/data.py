"""Data-loading benchmark (`dawn-bench data`): what the clip store costs a training process.

1. Start-up on a large index. `write_index` generates a store of N clips that has only its index
   (``index.json`` as `build_index` writes it, and ``clips.npz``; no clip folders): VoxCeleb2-like ids
   (``id00012_21Uxsk56VDQ_00001_000``), 6,000 speakers split 80/10/10 by speaker, 50-500 frames a clip. In a
   fresh process (`memory.run_isolated`), one rank's data module of each stage (stage-1 pairs; stage-3
   20-frame clips, mode A), with samples_per_clip 1 and its config's, is built, set up for fitting, asked for
   the training statistics and its training loader, and draws the first batch of keys of the first epoch
   (the sampler orders the whole epoch first): seconds of each step, and peak resident memory of the process
   and over the interpreter with its imports done. Nothing is read per clip. The goal: under 10 s and 2 GiB.
2. Samples/s of one loader worker: small synthetic stores at each size (built once in a work folder) and
   their packs (`pack_store`), read with ``dataset[key]`` in training mode, keys in the training order, in
   this process with one torch thread. "cold" drops the open clip readers before each sample, as at scale
   where a worker seldom meets a clip twice; "warm" keeps them (a few clips: every decoder stays open).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE, __version__
from dawn_lightning.benchmarks.memory import measured_row, peak_mib, reset_peak, rss_mib, run_isolated
from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.clip_table import SPLITS, ClipTable
from dawn_lightning.data.store import FORMAT_VERSION, SIGNAL_DIMS
from dawn_lightning.data.store_files import config_hash, write_json_atomic

GOAL = {"seconds": 10.0, "mib": 2048.0}
# stage -> (data module, its arguments, samples_per_clip of conf/datamodule/stage1.yaml and stage3a.yaml)
STAGES = {
    "stage1_pairs": ("FramePairDataModule", {}, 32),
    "stage3_clips": ("VideoClipDataModule", {"num_frames": 20, "mode": "first"}, 8),
}
LAYOUTS = ("folder_cold", "folder_warm", "packed_cold", "packed_warm")
GENERATOR = {"seed": 0, "identities": {"train": 4, "val": 1, "test": 1}, "clips_per_identity": 2}
LETTERS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8)


def cpu_model() -> str:
    """The CPU's model name (lscpu, else /proc/cpuinfo)."""
    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, env=os.environ | {"LC_ALL": "C"}
        ).stdout
    except OSError:
        text = ""
    if Path("/proc/cpuinfo").exists():
        text += Path("/proc/cpuinfo").read_text()
    for line in text.splitlines():
        if line.startswith(("Model name:", "model name")):
            return line.split(":", 1)[1].strip()
    return "unknown"


def write_index(root: str | os.PathLike, clips: int, speakers: int = 6000, seed: int = 0) -> Path:
    """A store of ``clips`` clips with an index and no clip folders (see the module's docstring)."""
    rng, root, speakers = np.random.default_rng(seed), Path(root), min(speakers, clips)
    speaker = np.sort(rng.integers(0, speakers, clips))
    video = np.sort(speaker * 16 + rng.integers(0, 16, clips))  # one of the speaker's 16 videos
    segment = np.arange(clips) - np.searchsorted(video, video)  # the clip's number in its video
    names = rng.choice(LETTERS, (speakers * 16, 11)).view("S11").ravel().astype(str)[video]
    triples = zip(speaker.tolist(), names, segment.tolist(), strict=True)
    ids = np.array([f"id{s:05d}_{v}_{k + 1:05d}_000" for s, v, k in triples], "S")
    order = np.argsort(ids, kind="stable")
    split_of = np.empty(speakers, np.int8)  # 80 % of the speakers train, 10 % val, 10 % test
    split_of[rng.permutation(speakers)] = np.digitize(np.arange(speakers) * 10 // speakers, [8, 9])
    frames, identities = rng.integers(50, 501, clips), [f"id{s:05d}".encode() for s in range(speakers)]
    table = ClipTable(ids[order], frames[order], split_of[speaker[order]], speaker[order], identities)
    features, config = LogMelFeatures(), {"kind": "bench", "clips": clips, "speakers": speakers, "seed": seed}
    dims = {"audio_features": features.dim, **SIGNAL_DIMS}
    train = int(table.num_frames[table.split == 0].sum())  # statistics of the training split: plausible
    stats = {
        n: {"frames": train, "mean": [0.0] * d, "std": [1.0] * d, "diff_std": [0.1] * d}
        for n, d in dims.items()
    }
    index = {
        "format_version": FORMAT_VERSION, "project_version": __version__, "config": config,
        "config_hash": config_hash(config), "fps": FPS, "sample_rate": SAMPLE_RATE, "frame_size": 256,
        "frames_format": "mp4", "audio_features": features.spec, "signals": dims, "layout": "folder",
        "num_clips": clips, "splits": {s: int((table.split == k).sum()) for k, s in enumerate(SPLITS)},
        "total_frames": int(frames.sum()), "failed": [], "statistics": {"train": stats}, "problems": [],
    }  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    table.save(root / "clips.npz")
    write_json_atomic(root / "index.json", index)
    return root


def startup(store_dir: str, stage: str, samples_per_clip: int) -> dict:
    """One rank's data module of ``stage`` from nothing to its first batch of keys (in a fresh process)."""
    clock = time.perf_counter()
    from dawn_lightning.data import datamodules

    name, kwargs, _ = STAGES[stage]
    row = {"stage": stage, "module": name, "samples_per_clip": samples_per_clip}
    row["import_s"], baseline, reset = time.perf_counter() - clock, rss_mib(), reset_peak()
    start = clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        row[f"{step}_s"], clock = time.perf_counter() - clock, time.perf_counter()

    module = getattr(datamodules, name)(store_dir, samples_per_clip=samples_per_clip, **kwargs)
    lap("construct")
    module.setup("fit")
    lap("setup")
    module.train_statistics()
    lap("statistics")
    loader = module.train_dataloader()
    lap("loader")
    first = next(iter(loader.batch_sampler))
    lap("order")
    peak = peak_mib(reset)
    row |= {"total_s": time.perf_counter() - start, "train_samples": len(loader.sampler), "batch": len(first)}
    row |= {"baseline_mib": baseline, "peak_mib": peak, "over_baseline_mib": peak - baseline}
    row["meets_goal"] = row["total_s"] < GOAL["seconds"] and peak < GOAL["mib"]
    return row | {"peak_from": "VmHWM (reset)" if reset else "ru_maxrss"}


def startup_rows(clips: int, isolate: bool = True, log: Callable[[str], None] = print) -> dict:
    """`startup` of each stage with samples_per_clip 1 and its config's, on a generated index of ``clips``."""
    with tempfile.TemporaryDirectory(prefix="dawn-bench-index-") as tmp:
        start = time.perf_counter()
        write_index(tmp, clips)
        results = {"clips": clips, "index_write_s": time.perf_counter() - start, "rows": []}
        results["clips_npz_mib"] = (Path(tmp) / "clips.npz").stat().st_size / 2**20
        for stage, (_, _, configured) in STAGES.items():
            for per_clip in sorted({1, configured}):
                args = {"stage": stage, "samples_per_clip": per_clip}
                if isolate:
                    row = measured_row(run_isolated, args, measure=startup, store_dir=tmp, **args)
                else:
                    row = startup(tmp, **args)
                results["rows"].append(row)
                done = (
                    f"{row['total_s']:.1f} s, {row['peak_mib']:.0f} MiB" if "total_s" in row else row["note"]
                )
                log(f"data: start-up {stage}, samples_per_clip {per_clip}: {done}")
    return results


def build_stores(work: str | os.PathLike, size: int, seconds: tuple[float, float]) -> dict[str, str]:
    """A synthetic folder store at ``size`` px and its pack, under ``work`` (made once, then reused)."""
    from dawn_lightning.data.pack import pack_store
    from dawn_lightning.data.synthetic_store import build_synthetic_store

    generator = GENERATOR | {"seconds": list(seconds)}
    folder = Path(work) / f"synthetic{size}-{config_hash(generator)[:8]}"
    packed = folder.with_name(folder.name + "-packed")
    if not (folder / "index.json").exists():
        build_synthetic_store(folder, size, generator, LogMelFeatures(), workers=2)
    if not (packed / "index.json").exists():
        pack_store(str(folder), str(packed))
    return {"folder": str(folder), "packed": str(packed)}


def throughput(store_dir: str, stage: str, samples: int, cold: bool) -> float:
    """Samples/s of ``dataset[key]`` over ``samples`` training keys, after one unmeasured sample; the data
    module as the stage's config makes it (samples_per_clip; stage 1 augments its pairs)."""
    from dawn_lightning.data import datamodules
    from dawn_lightning.data.transforms import PairAugment

    name, kwargs, samples_per_clip = STAGES[stage]
    extra = {"augment": PairAugment()} if stage == "stage1_pairs" else {}
    module = getattr(datamodules, name)(store_dir, samples_per_clip=samples_per_clip, **kwargs, **extra)
    loader = module.train_dataloader()
    keys, dataset = [], loader.dataset
    while len(keys) <= samples:  # the training order, epoch after epoch
        loader.sampler.set_epoch(len(keys) // len(loader.sampler))
        keys += list(loader.sampler)
    dataset[keys.pop()]
    start = time.perf_counter()
    for key in keys[:samples]:
        if cold:
            dataset._readers.clear()
        dataset[key]
    return samples / (time.perf_counter() - start)


def data_benchmark(
    clips: int = 1_000_000,
    sizes=(128, 256),
    work: str = "data/bench",
    samples: dict[str, int] | None = None,
    seconds: tuple[float, float] = (4.0, 6.0),
    isolate: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Both parts; ``clips`` 0 skips the start-up, and a stage's ``samples`` 0 its throughput."""
    import torch

    samples = {"stage1_pairs": 200, "stage3_clips": 50} | (samples or {})
    results = {"cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__, "goal": GOAL}
    if clips:
        results["startup"] = startup_rows(clips, isolate, log)
    threads, rows = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for size in sizes if any(samples.values()) else ():
            stores = build_stores(work, size, seconds)
            for stage, count in ((s, n) for s, n in samples.items() if n):
                row = {"stage": stage, "size": size, "samples": count}
                for layout in LAYOUTS:
                    store, mode = stores[layout.split("_")[0]], layout.split("_")[1]
                    row[layout] = throughput(store, stage, count, cold=mode == "cold")
                rows.append(row)
                log(f"data: {stage} {size} px, samples/s: " + ", ".join(f"{k} {row[k]:.1f}" for k in LAYOUTS))
    finally:
        torch.set_num_threads(threads)
    return results | {"throughput": {"torch_threads": 1, "rows": rows}}


def markdown(results: dict) -> str:
    lines = [f"CPU: {results['cpu']} ({results['cpus']} cores)"]
    if "startup" in results:
        steps = ("construct", "setup", "statistics", "loader", "order")
        lines += [
            f"\nStart-up of one rank's data module on {results['startup']['clips']:,} clips "
            f"(goal: under {GOAL['seconds']:.0f} s and {GOAL['mib']:.0f} MiB)\n",
            "| data module | samples/epoch | construct s | setup s | statistics s | loader s | epoch order s "
            "| total s | peak MiB (over interpreter) |",
            "|---" * 9 + "|",
        ]
        for row in results["startup"]["rows"]:
            name = f"{row['stage']} (samples_per_clip {row['samples_per_clip']})"
            if "total_s" not in row:
                lines.append(f"| {name} | {row['note']} |")
                continue
            lines.append(
                f"| {name} | {row['train_samples']:,} | "
                + " | ".join(f"{row[f'{s}_s']:.2f}" for s in steps)
                + f" | {row['total_s']:.2f} | {row['peak_mib']:.0f} ({row['over_baseline_mib']:.0f}) |"
            )
    if results["throughput"]["rows"]:
        lines += ["\nSamples/s of one loader worker (one torch thread, training mode)\n"]
        lines += ["| stage | size | " + " | ".join(LAYOUTS).replace("_", " ") + " |", "|---" * 6 + "|"]
        for row in results["throughput"]["rows"]:
            rates = " | ".join(f"{row[k]:.1f}" for k in LAYOUTS)
            lines.append(f"| {row['stage']} | {row['size']} px | {rates} |")
    if "shards" in results:
        r = results["shards"]
        lines += [
            f"\nPreprocessing {r['videos']} real videos at {r['size']} px: "
            f"one process {r['single_seconds']} s; "
            f"{r['shards']} shards at once {r['sharded_seconds']} s (shard {r['killed_shard']} SIGKILLed "
            f"mid-way: {r['killed_with_sigkill']}, index refused until it re-ran: "
            f"{r['index_refused_while_unfinished']}). Clips {r['clips']}, same clips and splits: "
            f"{r['same_clips_and_splits']}, clips with different signals: "
            f"{len(r['clips_with_different_signals'])}, with different frames: "
            f"{len(r['clips_with_different_frames'])}"
        ]
    return "\n".join(lines)
