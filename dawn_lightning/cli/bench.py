"""`dawn-bench` (`make bench`): measured figures for the README, written as JSON. Heavier than a test."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from dawn_lightning.allocator import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    parser = argparse.ArgumentParser(prog="dawn-bench", description=__doc__)
    parser.add_argument(
        "stage",
        choices=["stage1", "stage2", "stage3", "generate", "preprocess", "train", "data", "sampling", "gpu"],
    )
    parser.add_argument("--checkpoint", help="a checkpoint of that stage to score (stage 2 needs one)")
    parser.add_argument("--store", default="data/synthetic64")
    parser.add_argument(
        "--out", default="experiments/bench", help="a folder (writes <stage>.json there) or a .json file"
    )
    stage3 = parser.add_argument_group("stage3 (A2V denoiser speed and memory against F; no checkpoint)")
    stage3.add_argument(
        "--sizes", type=int, nargs="+", help="frame sizes: 64 and/or 128 (default both; data: 128 256)"
    )
    stage3.add_argument("--frames", type=int, nargs="+", default=[50, 100, 200, 400])
    stage3.add_argument("--attention", nargs="+", default=["banded", "full"], choices=["banded", "full"])
    stage3.add_argument("--steps", type=int, default=20, help="DDIM steps")
    stage3.add_argument("--threads", type=int, default=2, help="torch threads in each measuring process")
    stage3.add_argument(
        "--repeats", type=int, default=3, help="timed passes (median) after a warm-up; 1 for big ones"
    )
    stage3.add_argument(
        "--sample-sizes",
        type=int,
        nargs="*",
        default=[64],
        help="sizes whose full DDIM sampling is run; elsewhere it is estimated as steps x the pass time",
    )
    generate = parser.add_argument_group(
        "generate (end to end, portrait + speech -> mp4, per phase; also uses --sizes, --steps, --threads; "
        "writes generation.json)"
    )
    generate.add_argument("--seconds", type=float, nargs="+", default=[10, 60], help="lengths of speech")
    generate.add_argument("--sampler", default="ddim", choices=["ddim", "flow_euler", "flow_heun"])
    generate.add_argument("--generate-guidance", type=float, default=1.0, help="> 1 doubles the passes")
    generate.add_argument("--decode-batch-size", type=int, default=32, help="frames per stage-1 decoder call")
    generate.add_argument(
        "--warmup-seconds", type=float, default=1.0, help="an unmeasured generation first (0: none)"
    )
    prep = parser.add_argument_group(
        "preprocess (one worker's frames/s by phase on real videos; writes preprocess.json)"
    )
    prep.add_argument(
        "--videos", nargs="+", help="talking-head videos (default: three clips of ../shared/realdata)"
    )
    prep.add_argument("--face-model", help="face_landmarker.task (default: $DAWN_FACE_MODEL)")
    prep.add_argument("--size", type=int, default=256, help="output frame size")
    train = parser.add_argument_group(
        "train (training samples/s of each stage as dawn-train runs it, data loading included)"
    )
    train.add_argument("--stages", nargs="+", default=["stage1", "stage2", "stage3"])
    train.add_argument("--train-steps", type=int, default=10, help="timed batches, after 2 warm-up ones")
    train.add_argument(
        "--variant",
        action="append",
        default=[],
        help="space-separated overrides measured as well, e.g. 'trainer.precision=bf16-mixed' (repeatable)",
    )
    loading = parser.add_argument_group(
        "data (start-up of a data module on a generated index; samples/s of one loader worker at --sizes, "
        "folder store and pack; writes data.json)"
    )
    loading.add_argument(
        "--clips", type=int, default=1_000_000, help="clips of the generated index (0: skip)"
    )
    loading.add_argument(
        "--pair-samples", type=int, default=200, help="stage-1 pairs drawn per store (0: skip)"
    )
    loading.add_argument(
        "--clip-samples", type=int, default=50, help="stage-3 clips drawn per store (0: skip)"
    )
    loading.add_argument(
        "--work", default="data/bench", help="folder of the synthetic stores read (made once, then reused)"
    )
    loading.add_argument(
        "--shard-input",
        help="real videos preprocessed by 3 shard processes (one killed) and by one: default "
        "../shared/realdata when present; '' skips it; needs --face-model (or $DAWN_FACE_MODEL)",
    )
    sampling = parser.add_argument_group(
        "sampling (each stage-3 sampler: passes, seconds per second of video, lip sync, FVD; also uses "
        "--store, --threads; writes sampling.json)"
    )
    sampling.add_argument("--teacher", help="a diffusion stage 3 (default: <run>/stage3a_diffusion/latest)")
    sampling.add_argument("--flow", help="a flow-matching stage 3 (default: <run>/stage3a/latest)")
    sampling.add_argument("--distilled", help="a distilled student (default: <run>/stage3a_distill/latest)")
    sampling.add_argument(
        "--run", default="experiments", help="where the stage-1 and stage-2 checkpoints are"
    )
    sampling.add_argument("--split", default="test")
    sampling.add_argument("--max-clips", type=int, help="the first N clips of the split (default: all)")
    sampling.add_argument("--guidance", type=float, default=1.5, help="classifier-free guidance scale")
    gpu = parser.add_argument_group(
        "gpu (each stage trained at the paper's sizes, 128-px generation, on one accelerator; gpu.json)"
    )
    gpu.add_argument("--device", default="auto", help="cuda, cpu or auto (CUDA when there is one)")
    gpu.add_argument(
        "--profile", default="paper", choices=["paper", "tiny"], help="tiny: 64-px sizes, 3 steps"
    )
    gpu.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    gpu.add_argument("--gpu-steps", type=int, help="timed training steps (default: the profile's)")
    gpu.add_argument("--max-train-seconds", type=float, default=120.0, help="a stage stops training after it")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [128, 256] if args.stage == "data" else [64, 128]
    elif args.stage != "data" and not set(args.sizes) <= {64, 128}:
        parser.error(f"--sizes: {args.stage} measures 64 and 128 px, not {args.sizes}")
    results = {"torch_threads": torch.get_num_threads()}
    if args.stage == "stage3":
        from dawn_lightning.benchmarks import audio_to_motion

        results = audio_to_motion.stage3(
            sizes=args.sizes,
            frames=args.frames,
            attentions=args.attention,
            steps=args.steps,
            threads=args.threads,
            repeats=args.repeats,
            sample_sizes=args.sample_sizes,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    elif args.stage == "generate":
        from dawn_lightning.benchmarks import generation

        results = generation.generation(
            sizes=args.sizes,
            seconds=args.seconds,
            steps=args.steps,
            threads=args.threads,
            decode_batch_size=args.decode_batch_size,
            warmup_seconds=args.warmup_seconds,
            sampler=args.sampler,
            guidance=args.generate_guidance,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    elif args.stage == "preprocess":
        from dawn_lightning.benchmarks import preprocess

        results = preprocess.worker_speed(
            args.videos or preprocess.default_videos(), args.face_model, args.size
        )
    elif args.stage == "train":
        from dawn_lightning.benchmarks import training

        variants = [[], *(v.split() for v in args.variant)]
        results["runs"] = [
            training.training_speed(stage, args.store, args.train_steps, overrides=variant)
            for stage in args.stages
            for variant in variants
        ]
    elif args.stage == "data":
        from dawn_lightning.benchmarks import data, data_shards

        results = data.data_benchmark(
            clips=args.clips,
            sizes=args.sizes,
            work=args.work,
            samples={"stage1_pairs": args.pair_samples, "stage3_clips": args.clip_samples},
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        shard_input = data_shards.default_input() if args.shard_input is None else args.shard_input
        model = args.face_model or os.environ.get("DAWN_FACE_MODEL")
        if shard_input and model:
            results["shards"] = data_shards.shard_equivalence(shard_input, model, Path(args.work) / "shards")
        else:
            print(
                "data: sharded preprocessing skipped (needs --shard-input and --face-model)", file=sys.stderr
            )
    elif args.stage == "sampling":
        from dawn_lightning.benchmarks import sampling

        given = {"diffusion": args.teacher, "flow": args.flow, "distilled": args.distilled}
        tasks = {"diffusion": "stage3a_diffusion", "flow": "stage3a", "distilled": "stage3a_distill"}
        found = {k: str(Path(args.run) / t / "latest") for k, t in tasks.items()}
        results = sampling.sampling_benchmark(
            {k: given[k] or (found[k] if Path(found[k]).exists() else None) for k in tasks},
            args.run,
            args.store,
            args.split,
            args.max_clips,
            args.threads,
            args.guidance,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    elif args.stage == "gpu":
        from dawn_lightning.benchmarks import gpu

        results = gpu.gpu_benchmark(
            device=args.device,
            profile=args.profile,
            precision=args.precision,
            stages=tuple(args.stages),
            steps=args.gpu_steps,
            max_train_seconds=args.max_train_seconds,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    elif args.stage == "stage1":
        from dawn_lightning.benchmarks import motion

        results["training"] = motion.training_speed()
        results["decode"] = [
            motion.decode_throughput(name, size) for name, size in (("motion_64", 64), ("motion_128", 128))
        ]
        if args.checkpoint:
            results["quality"] = motion.reconstruction_quality(args.checkpoint, args.store)
    else:
        from dawn_lightning.benchmarks import pose_blink

        if not args.checkpoint:
            parser.error("stage2 needs --checkpoint (a `make train-stage2` checkpoint)")
        results["long_generation"] = pose_blink.long_generation(args.checkpoint, args.store)
        results["quality"] = pose_blink.track_quality(args.checkpoint, args.store)
    out = Path(args.out)
    if out.suffix != ".json":
        out = out / ("generation.json" if args.stage == "generate" else f"{args.stage}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    if args.stage in ("stage3", "generate", "preprocess", "train", "data", "sampling", "gpu"):
        if args.stage == "preprocess":
            table = preprocess.markdown(results)
        elif args.stage == "train":
            table = training.markdown(results["runs"])
        elif args.stage == "data":
            table = data.markdown(results)
        elif args.stage == "sampling":
            table = sampling.markdown(results)
        elif args.stage == "gpu":
            table = gpu.markdown(results)
        else:
            table = (audio_to_motion if args.stage == "stage3" else generation).markdown(results)
        out.with_suffix(".md").write_text(table + "\n")
        print(table)
        print(f"\nwritten: {out}, {out.with_suffix('.md')}")
    else:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
