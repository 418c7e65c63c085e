"""Evaluation: generate the videos of a store split with a run's checkpoints (or take two folders of mp4s)
and score them with `metrics.suite.EvaluationSuite`; write metrics.json, report.md and TensorBoard scalars.

Protocol per clip: the portrait is the clip's first frame, the speech its audio; ``frames`` null keeps the
ground-truth length, a number cuts clips to their first ``frames`` frames (HDTF: 200). The LSE control pairs
each generated video with the next clip's speech: a lip-synced generator must score clearly better on its own
speech than on another's.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dawn_lightning import FPS, SAMPLES_PER_FRAME
from dawn_lightning.metrics.suite import EvaluationSuite, check_published_weights
from dawn_lightning.report import write_summary

log = logging.getLogger(__name__)


def build_pipeline(cfg: Mapping):
    from dawn_lightning.pipeline import DawnPipeline

    checkpoints = cfg["checkpoints"]
    return DawnPipeline.from_run_dirs(
        cfg["run"],
        motion=checkpoints["motion"],
        pose_blink=checkpoints["pose_blink"],
        diffusion=checkpoints["diffusion"],
        device=cfg["device"],
        precision=cfg["precision"],
        sampler={k: v for k, v in dict(cfg["sampler"]).items() if v is not None},
        decode_batch_size=cfg["decode_batch_size"],
    )


def evaluate_run(cfg: Mapping) -> dict:
    """Generates and scores every clip of the split ``cfg["split"]`` of the store ``data.store_dir``."""
    from dawn_lightning.data.audio_features import LogMelFeatures
    from dawn_lightning.data.store import ClipStore, StoreError
    from dawn_lightning.pipeline import PortraitState

    store = ClipStore(cfg["data"]["store_dir"])
    clips = store.split(cfg["split"])[: cfg["max_clips"]]
    if not clips:
        raise StoreError(f"{store.root}: no {cfg['split']} clips to evaluate")
    pipeline = build_pipeline(cfg)
    if pipeline.frame_size != store.frame_size:
        raise ValueError(
            f"the run generates {pipeline.frame_size} px frames, the store {store.root} holds "
            f"{store.frame_size} px"
        )
    suite = EvaluationSuite(cfg["metrics"], pipeline.device, face_detector(cfg))
    if pipeline.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    onsets = LogMelFeatures()
    out = Path(cfg["out"])
    rank, world = rank_and_world()
    if world > len(clips):
        raise ValueError(f"processes={world}, but the split has {len(clips)} clips: use at most that many")
    for index, info in list(enumerate(clips))[rank::world]:  # each process its share; metrics reduce
        reader = store.reader(info)
        count = info.num_frames if cfg["frames"] is None else min(int(cfg["frames"]), info.num_frames)
        truth = reader.frames(range(count))
        audio = reader.audio()[: count * SAMPLES_PER_FRAME]
        signals = {k: v[:count] for k, v in reader.signals.items()}
        if cfg["initial_state"] == "store":
            state = PortraitState(*(torch.from_numpy(signals[k][0]) for k in ("face_box", "pose", "blink")))
            pipeline.initial_state = lambda image, state=state: state
        started = time.perf_counter()
        video = pipeline(truth[0], audio, seed=cfg["seed"])
        suite.add_speed(time.perf_counter() - started, len(video))
        control = None
        if cfg["control_audio"] and len(clips) > 1:
            control = store.reader(clips[(index + 1) % len(clips)]).audio()
        suite.add_video(truth, video.frames, audio, video.audio, control)
        suite.add_lip_proxy(truth, video.frames, signals["mouth_box"][0], audio)
        features = onsets(audio, count)
        suite.add_motion("generated", video.pose, video.blink, features)
        suite.add_motion("truth", signals["pose"], signals["blink"], features)
        if cfg["save_videos"]:
            video.save(out / "videos" / f"{info.clip_id}.mp4")
        log.info("%d/%d %s: %d frames", index + 1, len(clips), info.clip_id, len(video))
    results = suite.results()
    results["peak_memory_mib"] = peak_memory(pipeline.device)
    protocol = {
        "frames": cfg["frames"] or "ground-truth length",
        "initial_state": cfg["initial_state"],
        "seed": cfg["seed"],
        "sampler": dict(pipeline.sampler_settings),
        "passes": network_passes(pipeline.sampler_settings),
    }
    record = {
        "mode": "run",
        "run": str(cfg["run"]),
        "checkpoints": pipeline.names,
        "store": str(store.root),
        "split": cfg["split"],
        "clips": len(clips),
        "device": str(pipeline.device),
        "protocol": protocol,
        "metrics": results,
        "notes": suite.notes,
    }
    if rank != 0:
        return record
    write_report(record, out)
    metrics = {f"{cfg['split']}/{k}": v["value"] for k, v in results.items() if isinstance(v, dict)}
    optimized = next(
        (
            k
            for k in (f"{cfg['split']}/lse_c_generated", f"{cfg['split']}/lip_proxy_generated")
            if k in metrics
        ),
        None,
    )
    write_summary(out, metrics, optimized, passes=protocol["passes"], clips=len(clips))
    return record


def network_passes(sampler: Mapping) -> int:
    """Stage-3 network passes a video costs: one per step (Heun: two), twice that with classifier-free
    guidance."""
    guided = sampler.get("guidance_scale") not in (None, 1, 1.0)
    steps = int(sampler["num_steps"])
    return (2 * steps if sampler.get("name") == "flow_heun" else steps) * (2 if guided else 1)


def face_detector(cfg: Mapping):
    """The face boxes of a video's frames by the face backend of ``cfg["face"]`` (for LSE's face crop), or
    None when ``metrics.lse.face_crop`` is off."""
    if not cfg["metrics"]["lse"].get("face_crop"):
        return None
    from dawn_lightning.pipeline import face_backend_from_config

    backend = face_backend_from_config(cfg.get("face"))
    if backend is None:
        raise ValueError(
            "metrics.lse.face_crop=true needs a face model: set face.model_path (or DAWN_FACE_MODEL) to "
            "MediaPipe's face_landmarker.task"
        )

    def boxes(frames: np.ndarray) -> list:
        backend.reset()  # each video is tracked from its first frame
        found = [backend.analyze(np.ascontiguousarray(f), t * 1000 // FPS) for t, f in enumerate(frames)]
        backend.reset()
        return [None if face is None else face.box for face in found]

    return boxes


def read_mp4(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 frames (T, H, W, 3) at 25 fps and the 16 kHz mono sound track (None if it has none) of a video;
    one at another or a variable frame rate is resampled to 25 fps, its sound aligned to its first frame."""
    from dawn_lightning.data.preprocess.decode import NoAudioError, open_video
    from dawn_lightning.data.speech import SpeechError, load_speech
    from dawn_lightning.data.video_io import VideoReader

    reader = VideoReader(path)
    if abs(reader.fps - FPS) > 1e-3:
        try:
            video = open_video(path)
            return video.frames(0, video.num_frames), video.audio
        except NoAudioError:
            pass
    frames = reader.get(range(len(reader)))
    try:
        audio = load_speech(path)
    except SpeechError:
        audio = None
    return frames, audio


def evaluate_folders(cfg: Mapping) -> dict:
    """Scores every mp4 of ``generated_dir`` against the same-named mp4 of ``real_dir`` (LSE of the generated
    ones with their own sound track, or the real one's when they have none)."""
    generated, real = Path(cfg["generated_dir"]), Path(cfg["real_dir"])
    for name, folder in (("generated_dir", generated), ("real_dir", real)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{name}: {folder} is not a folder")
    fakes = sorted(generated.glob("*.mp4"))[: cfg["max_clips"]]
    if not fakes:
        raise FileNotFoundError(f"generated_dir: {generated} holds no .mp4")
    missing = [f.name for f in fakes if not (real / f.name).is_file()]
    if missing:
        raise FileNotFoundError(f"real_dir: {real} lacks {', '.join(missing[:5])} (matched by file name)")
    device = _device(cfg["device"])
    suite = EvaluationSuite(cfg["metrics"], device, face_detector(cfg))
    reals = [real / f.name for f in fakes]
    rank, world = rank_and_world()
    if world > len(fakes):
        raise ValueError(f"processes={world}, but there are {len(fakes)} videos: use at most that many")
    for index, (fake_path, real_path) in list(enumerate(zip(fakes, reals, strict=True)))[rank::world]:
        truth, audio = read_mp4(real_path)
        frames, fake_audio = read_mp4(fake_path)
        if audio is None:
            raise ValueError(f"{real_path}: no sound track (LSE needs the speech)")
        control = (
            read_mp4(reals[(index + 1) % len(reals)])[1] if cfg["control_audio"] and len(reals) > 1 else None
        )
        suite.add_video(truth, frames, audio, fake_audio, control)
        log.info("%d/%d %s", index + 1, len(fakes), fake_path.name)
    record = {
        "mode": "folders",
        "generated_dir": str(generated),
        "real_dir": str(real),
        "clips": len(fakes),
        "metrics": suite.results() | {"peak_memory_mib": peak_memory(device)},
        "notes": suite.notes,
    }
    if rank == 0:
        write_report(record, Path(cfg["out"]))
    return record


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes of the evaluation (0, 1 in a single process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluate(cfg: Mapping) -> dict:
    """Folder mode when ``generated_dir`` or ``real_dir`` is set, else generation from the run.

    ``processes`` > 1 spawns that many processes (gloo on the CPU, NCCL with a GPU each) that share the clips
    and reduce the metric states; under torchrun (``WORLD_SIZE`` > 1) this process is one of them. Rank 0
    writes the report; every process returns the same record."""
    if cfg["metrics"].get("require_weights"):  # a published protocol: refused before any work
        check_published_weights(cfg["metrics"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():  # started by torchrun
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return _evaluate_in_group(int(os.environ["RANK"]), world, cfg, local_rank=local)
    processes = int(cfg.get("processes") or 1)
    if processes > 1 and not dist.is_initialized():
        return _spawn(cfg, processes)
    if cfg["generated_dir"] or cfg["real_dir"]:
        if not (cfg["generated_dir"] and cfg["real_dir"]):
            raise ValueError(
                "generated_dir and real_dir go together (score one folder of mp4s against another)"
            )
        return evaluate_folders(cfg)
    return evaluate_run(cfg)


def _spawn(cfg: Mapping, processes: int) -> dict:
    """``processes`` local processes, one rank each; rank 0's record."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="dawn-evaluate-") as folder:
        record = Path(folder) / "record.json"
        try:
            mp.spawn(_spawned_rank, args=(processes, dict(cfg), port, str(record)), nprocs=processes)
        except mp.ProcessRaisedException as error:  # the rank's own error, in one line
            last = [line for line in str(error).splitlines() if line.strip()][-1]
            raise ValueError(f"process {error.error_index}: {last.split(': ', 1)[-1]}") from None
        return json.loads(record.read_text())


def _spawned_rank(rank: int, world: int, cfg: dict, port: int, record_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    record = _evaluate_in_group(rank, world, cfg, local_rank=rank)
    if rank == 0:
        Path(record_path).write_text(json.dumps(record, default=str))


def _evaluate_in_group(rank: int, world: int, cfg: Mapping, local_rank: int) -> dict:
    """One rank of a process group: NCCL with a GPU of its own when the device allows, else gloo."""
    cuda = str(cfg["device"]) in ("auto", "cuda") and torch.cuda.device_count() >= world
    if cuda:
        torch.cuda.set_device(local_rank)
        cfg = dict(cfg) | {"device": f"cuda:{local_rank}"}
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        return evaluate(dict(cfg) | {"processes": 1})
    finally:
        dist.destroy_process_group()


def _device(name: str) -> torch.device:
    from dawn_lightning.pipeline import resolve_device

    return resolve_device(name)


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        value = torch.cuda.max_memory_allocated(device) / 2**20
        return {"label": "peak GPU memory allocated (MiB)", "value": round(value, 1)}
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"label": "peak memory, resident set of the process (MiB)", "value": round(value, 1)}


def markdown(record: dict) -> str:
    lines = [f"# Evaluation ({record['mode']})", ""]
    for key in ("run", "store", "split", "generated_dir", "real_dir", "clips", "device"):
        if key in record:
            lines.append(f"- {key}: {record[key]}")
    if "protocol" in record:
        lines.append(f"- protocol: {json.dumps(record['protocol'], default=str)}")
    lines += ["", "| metric | value |", "|---|---|"]
    for entry in record["metrics"].values():
        lines.append(f"| {entry['label']} | {entry['value']:.4g} |")
    if record["notes"]:
        lines += ["", "Notes:", *(f"- {note}" for note in record["notes"])]
    return "\n".join(lines) + "\n"


def write_report(record: dict, out: Path) -> None:
    """``out``/metrics.json, report.md and tensorboard/ (one scalar per metric, at step 0)."""
    from torch.utils.tensorboard import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    temporary = out / f".metrics.json.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(record, indent=1, default=str))  # in the report's order
    os.replace(temporary, out / "metrics.json")
    (out / "report.md").write_text(markdown(record))
    prefix = record.get("split", "eval")
    with SummaryWriter(str(out / "tensorboard")) as writer:
        for key, entry in record["metrics"].items():
            writer.add_scalar(f"{prefix}/{key}", entry["value"], 0)
    log.info("wrote %s and %s", out / "metrics.json", out / "report.md")
