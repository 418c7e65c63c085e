"""`dawn-bench gpu` (`make bench-gpu`): what one accelerator does with the paper's sizes, in one JSON.

- training: every stage's LightningModule (`experiment=stage1_128`, `stage2` with the paper's PBNet,
  `stage3a_128`) trained by a Lightning Trainer for a few hundred steps in bf16-mixed: samples/s after a
  warm-up and the peak memory. Batches are random tensors of the data modules' shapes, made once and cycled
  (the GPU's speed, not the loader's: `dawn-bench data` measures that); stage 1's perceptual pyramid runs a
  VGG19 of random weights (the cost of the pretrained one); stage 3 encodes its clips with a random stage 1.
- generation: `DawnPipeline` at 128 px from random-weight checkpoints, 10 s and 60 s of speech, with DAWN's
  DDIM 20 (temporal attention through flex_attention, and through the SDPA band) and the project's flow Euler
  2 with guidance (4 passes): seconds per second of video per phase and the peak memory, mp4 encoding
  included.
- attention: the banded temporal attention through flex_attention against the SDPA band on the device.

``profile="tiny"`` runs the same code at the 64-px CPU sizes with a few steps (``device=cpu``), which is how
CI and a machine without a GPU check that the benchmark itself works.
"""

from __future__ import annotations

import contextlib
import platform
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from dawn_lightning import FPS
from dawn_lightning.benchmarks.memory import peak_mib, reset_peak, rss_mib
from dawn_lightning.benchmarks.training import StepTimes, random_stage1
from dawn_lightning.config import compose

# Per profile: each stage's experiment and overrides, the audio feature width, the batch (None: the
# experiment's), the timed and warm-up steps, generation's frame size and lengths (seconds of speech).
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {
        "train": {
            "stage1": ("stage1_128", []),
            "stage2": ("stage2", ["model=pbnet", "datamodule.window=200"]),
            "stage3": ("stage3a_128", []),
        },
        "motion_model": "motion_128",
        "frame_size": 128,
        "audio_dim": 1024,  # HuBERT-large, the paper's audio features
        "batch": None,
        "steps": 200,
        "warmup": 10,
        "seconds": (10, 60),
    },
    "tiny": {
        "train": {
            "stage1": ("stage1", []),
            "stage2": ("stage2", ["model=pbnet_cpu", "datamodule.window=40"]),
            "stage3": ("stage3a", []),
        },
        "motion_model": "motion_64",
        "frame_size": 64,
        "audio_dim": 80,
        "batch": 2,
        "steps": 3,
        "warmup": 1,
        "seconds": (1, 2),
    },
}
# Generation settings: DAWN's sampler and the project's fast default (docs/fast-generation.md).
# Each: (objective, sampler, stage 3's attention backend: "auto" is flex_attention on CUDA).
SAMPLERS = {
    "ddim20": ("diffusion", {"name": "ddim", "num_steps": 20, "eta": 1.0, "guidance_scale": 1.0}, "auto"),
    "ddim20_sdpa": (
        "diffusion",
        {"name": "ddim", "num_steps": 20, "eta": 1.0, "guidance_scale": 1.0},
        "sdpa",
    ),
    "flow_euler2_cfg": ("flow", {"name": "flow_euler", "num_steps": 2, "guidance_scale": 1.5}, "auto"),
}
POOL = 8  # distinct random batches cycled through training


def environment(device: torch.device) -> dict[str, Any]:
    """The machine: CPU model, torch, and the accelerator's name and memory."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            ),
            cpu,
        )
    info = {"cpu": cpu, "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info |= {"gpu": properties.name, "gpu_memory_gib": properties.total_memory / 2**30}
    return info


# -- training ------------------------------------------------------------------------------------------------
def random_item(stage: str, frame_size: int, audio_dim: int, frames: int, generator: torch.Generator) -> dict:
    """One random sample with the keys, shapes and dtypes of that stage's training dataset
    (`FramePairDataset`, `SignalWindowDataset`, `VideoClipDataset` in mode "first")."""

    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    def boxes(*lead):  # x0, y0, x1, y1 in [0, 1] with x0 < x1, y0 < y1
        corner = rand(*lead, 2) * 0.5
        return torch.cat([corner, corner + 0.2 + rand(*lead, 2) * 0.3], dim=-1)

    seed = torch.randint(0, 2**62, (), generator=generator)
    if stage == "stage1":
        size = (3, frame_size, frame_size)
        return {"source": rand(*size), "driving": rand(*size), "driving_mouth_box": boxes(), "seed": seed}
    audio = torch.randn(frames, audio_dim, generator=generator)
    pose = torch.randn(frames, 6, generator=generator)
    blink = 0.3 + 0.05 * torch.randn(frames, 2, generator=generator)
    if stage == "stage2":
        mask = torch.ones(frames, dtype=torch.bool)
        return {"seed": seed, "audio": audio, "pose": pose, "blink": blink, "mask": mask}
    video = rand(3, frames, frame_size, frame_size)
    face_box, mouth_box = boxes(frames), boxes(frames)
    return {
        "video": video,
        "reference": video[:, 0].clone(),
        "ref_index": torch.tensor(0),
        "seed": seed,
        "audio": audio,
        "pose": pose,
        "blink": blink,
        "face_box": face_box,
        "mouth_box": mouth_box,
        "ref_pose": pose[0].clone(),
        "ref_blink": blink[0].clone(),
        "ref_face_box": face_box[0].clone(),
    }


class RandomItems(Dataset):
    """``count`` random samples of a stage (`random_item`), made once."""

    def __init__(self, stage: str, count: int, frame_size: int, audio_dim: int, frames: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.items = [random_item(stage, frame_size, audio_dim, frames, generator) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class CycledBatches(torch.utils.data.IterableDataset):
    """``length`` batches cycling through a few collated ones (no collation in the timed loop)."""

    def __init__(self, batches: list[dict], length: int):
        self.batches, self.length = batches, length

    def __iter__(self) -> Iterator[dict]:
        return (self.batches[i % len(self.batches)] for i in range(self.length))

    def __len__(self) -> int:
        return self.length


class RandomDataModule(L.LightningDataModule):
    """What a stage asks of its data module (`train_statistics`, `data_spec`, `make_dataset`), with
    random samples instead of a store."""

    def __init__(
        self, stage: str, batch: int, steps: int, frame_size: int, audio_dim: int, frames: int, pin: bool
    ):
        super().__init__()
        self.stage, self.batch, self.steps, self.pin = stage, batch, steps, pin
        self.shape = {"frame_size": frame_size, "audio_dim": audio_dim, "frames": frames}

    @property
    def data_spec(self) -> dict:
        spec = {"kind": "random", "dim": self.shape["audio_dim"], "sample_rate": 16_000, "hop": 16_000 // FPS}
        return {"audio_features": spec, "frame_size": self.shape["frame_size"], "store_kind": "synthetic"}

    def train_statistics(self) -> dict[str, dict[str, torch.Tensor]]:
        dims = {
            "audio_features": self.shape["audio_dim"],
            "pose": 6,
            "blink": 2,
            "face_box": 4,
            "mouth_box": 4,
        }
        return {
            name: {"mean": torch.zeros(dim), "std": torch.ones(dim), "diff_std": torch.full((dim,), 0.1)}
            for name, dim in dims.items()
        }

    def make_dataset(self, split: str, train: bool) -> Dataset:
        return RandomItems(self.stage, self.batch, **self.shape, seed=1)

    def train_dataloader(self) -> DataLoader:
        items = RandomItems(self.stage, self.batch * POOL, **self.shape)
        batches = [
            torch.utils.data.default_collate(items.items[i : i + self.batch])
            for i in range(0, len(items), self.batch)
        ]
        return DataLoader(CycledBatches(batches, self.steps), batch_size=None, pin_memory=self.pin)


class StopAfter(L.Callback):
    """Stops training once ``seconds`` have passed since the first batch ended (a long stage on a slow
    device measures fewer steps instead of overrunning the benchmark)."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.start = self.start or now
        if now - self.start > self.seconds:
            trainer.should_stop = True


def random_vgg19(path: Path) -> Path:
    """A torchvision VGG19 state dict of random weights: the perceptual loss's cost without its download."""
    import torchvision

    torch.save(torchvision.models.vgg19().state_dict(), path)
    return path


def train_stage(
    stage: str,
    profile: str,
    device: torch.device,
    precision: str,
    steps: int | None = None,
    max_seconds: float = 120.0,
) -> dict[str, Any]:
    """Trains ``stage`` (stage1/stage2/stage3) of ``profile`` for ``steps`` batches after the warm-up ones:
    samples/s over the timed ones and the peak memory (the device's allocator on CUDA, the resident set
    elsewhere)."""
    spec = PROFILES[profile]
    experiment, overrides = spec["train"][stage]
    steps = steps or spec["steps"]
    warmup = spec["warmup"]
    with tempfile.TemporaryDirectory(prefix="dawn-bench-gpu-") as folder:
        extra = [f"hydra.run.dir={folder}"]
        if stage == "stage1":
            extra.append(f"model.vgg_weights={random_vgg19(Path(folder) / 'vgg19.pth')}")
        if stage == "stage2":
            extra.append(f"model.net.audio_dim={spec['audio_dim']}")
        if stage == "stage3":
            stage1 = random_stage1(Path(folder) / "stage1.ckpt", spec["motion_model"])
            extra += [f"model.motion_ckpt={stage1}", f"model.net.audio_dim={spec['audio_dim']}"]
        if spec["batch"]:
            extra.append(f"datamodule.batch_size={spec['batch']}")
        cfg = compose("train", [f"experiment={experiment}", *overrides, *extra])
        L.seed_everything(cfg.seed, verbose=False)
        frames = {
            "stage1": 1,
            "stage2": cfg.datamodule.get("window"),
            "stage3": cfg.datamodule.get("num_frames"),
        }
        batch = int(cfg.datamodule.batch_size)
        data = RandomDataModule(
            stage,
            batch,
            warmup + steps,
            spec["frame_size"],
            spec["audio_dim"],
            frames[stage],
            device.type == "cuda",
        )
        model = hydra.utils.instantiate(cfg.model)
        timer = StepTimes()
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            precision=precision,
            max_epochs=1,
            max_steps=-1,
            limit_val_batches=0,
            gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[timer, StopAfter(max_seconds)],
        )
        with measured_peak(device) as peak:
            trainer.fit(model, datamodule=data)
    done = len(timer.times) - warmup
    if done < 1:
        raise RuntimeError(
            f"{stage}: only {len(timer.times)} steps ran, fewer than the {warmup} warm-up ones"
        )
    seconds = timer.times[-1] - timer.times[warmup - 1]
    return {
        "stage": stage,
        "experiment": experiment,
        "overrides": overrides,
        "precision": precision,
        "batch": batch,
        "frames": frames[stage],
        "frame_size": spec["frame_size"],
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": done,
        "warmup_steps": warmup,
        "seconds_per_step": seconds / done,
        "samples_per_s": batch * done / seconds,
        **peak,
    }


@contextlib.contextmanager
def measured_peak(device: torch.device) -> Iterator[dict[str, float]]:
    """Fills the yielded dict with the peak memory (MiB) of the block: ``peak_mib`` of the CUDA allocator
    (and ``reserved_peak_mib``), or of the process's resident set on the CPU."""
    figures: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        yield figures
        torch.cuda.synchronize(device)
        figures["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        figures["reserved_peak_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
        figures["memory"] = "CUDA allocator"
    else:
        reset, before = reset_peak(), rss_mib()
        yield figures
        figures["peak_mib"] = peak_mib(reset) - before
        figures["memory"] = "resident set over the start"


# -- generation ----------------------------------------------------------------------------------------------
def generate(
    profile: str, device: torch.device, precision: str, sampler: str, threads: int, log: Callable = print
) -> list[dict[str, Any]]:
    """`generation.measure` for each of the profile's lengths with ``sampler`` (a key of SAMPLERS), on
    random-weight checkpoints, in this process; the peak memory of the measured run added."""
    from dawn_lightning.benchmarks import generation

    spec = PROFILES[profile]
    objective, settings, attention = SAMPLERS[sampler]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dawn-bench-gpu-ckpt-") as folder:
        checkpoints = generation.write_checkpoints(
            spec["frame_size"], folder, objective=objective, sampler=settings
        )
        for seconds in spec["seconds"]:
            with measured_peak(device) as peak:
                row = generation.measure(
                    spec["frame_size"],
                    seconds,
                    checkpoints,
                    steps=settings["num_steps"],
                    threads=threads,
                    device=str(device),
                    precision=precision,
                    attention=attention,
                )
            row |= {
                "sampler": sampler,
                "passes": network_passes(settings),
                **{f"device_{k}": v for k, v in peak.items()},
            }
            log(f"gpu bench: generate {sampler} {seconds:g} s: {row['s_per_video_s']:.3f} s per s of video")
            rows.append(row)
    return rows


def network_passes(settings: dict[str, Any]) -> int:
    """U-Net passes of one sampling: steps, doubled by guidance."""
    return settings["num_steps"] * (2 if settings.get("guidance_scale", 1.0) != 1.0 else 1)


# -- attention -----------------------------------------------------------------------------------------------
def attention_check(device: torch.device, frames: int = 250, window: int = 40) -> dict[str, Any]:
    """flex_attention's band against the SDPA band on ``device`` (bf16 inputs of 1024 tokens' worth of
    heads): the largest difference and each one's time."""
    from dawn_lightning.models.audio_to_motion.temporal_attention import (
        banded_attention,
        flex_banded_attention,
    )
    from dawn_lightning.models.common.relative_position import RelativePositionBias

    generator = torch.Generator().manual_seed(0)
    shape = (64 if device.type == "cuda" else 2, 8, frames, 32)
    q, k, v = (torch.randn(*shape, generator=generator).to(device, torch.bfloat16) for _ in range(3))
    bias = RelativePositionBias(heads=8).to(device)
    times = {}
    outputs = {}
    for name, attend in (("sdpa", banded_attention), ("flex", flex_banded_attention)):
        with torch.no_grad():
            outputs[name] = attend(q, k, v, window, bias)  # warm-up (compiles flex on CUDA)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(10):
                attend(q, k, v, window, bias)
            synchronize(device)
        times[f"{name}_ms"] = (time.perf_counter() - start) * 100
    difference = (outputs["flex"].float() - outputs["sdpa"].float()).abs().max().item()
    return {"shape": list(shape), "window": window, "max_abs_difference": difference, **times}


def summary(value: Any) -> str:
    """The headline figures of a part's result, for the log (a killed run still leaves them)."""
    rows = value if isinstance(value, list) else [value]
    keys = ("samples_per_s", "s_per_video_s", "peak_mib", "device_peak_mib", "max_abs_difference", "flex_ms")
    return "; ".join(", ".join(f"{k} {row[k]:.4g}" for k in keys if k in row) for row in rows if row)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- all -----------------------------------------------------------------------------------------------------
def gpu_benchmark(
    device: str = "auto",
    profile: str = "paper",
    precision: str = "bf16",
    stages: tuple[str, ...] = ("stage1", "stage2", "stage3"),
    samplers: tuple[str, ...] = tuple(SAMPLERS),
    steps: int | None = None,
    max_train_seconds: float = 120.0,
    threads: int | None = None,
    log: Callable = print,
) -> dict[str, Any]:
    """Attention check, training of ``stages`` and generation with ``samplers``; a part that fails is
    recorded with its error and the rest still runs."""
    from dawn_lightning.pipeline.device import resolve_device

    target = resolve_device(device)
    threads = threads or torch.get_num_threads()
    results: dict[str, Any] = {
        "profile": profile,
        "precision": precision,
        "environment": environment(target),
        "torch_threads": threads,
        "errors": {},
    }

    def attempt(name: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            value = work()
        except Exception as error:  # noqa: BLE001 - one failing part must not lose the others' figures
            results["errors"][name] = f"{error!r}\n{traceback.format_exc(limit=6)}"
            log(f"gpu bench: {name} failed: {error!r}")
            return None
        log(f"gpu bench: {name} done in {time.perf_counter() - start:.0f} s: {summary(value)}")
        return value

    results["attention"] = attempt("attention", lambda: attention_check(target))
    mixed = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}[precision]
    results["training"] = [
        row
        for stage in stages
        if (
            row := attempt(
                f"train {stage}",
                lambda s=stage: train_stage(s, profile, target, mixed, steps, max_train_seconds),
            )
        )
    ]
    results["generation"] = [
        row
        for sampler in samplers
        for row in (
            attempt(
                f"generate {sampler}", lambda s=sampler: generate(profile, target, precision, s, threads, log)
            )
            or []
        )
    ]
    return results


def markdown(results: dict[str, Any]) -> str:
    """The training and generation rows as two markdown tables, with the machine."""
    env = results["environment"]
    lines = [
        f"{env.get('gpu', env['device'])}, CPU {env['cpu']}, torch {env['torch']}, {results['precision']}",
        "",
        "| stage | experiment | batch | samples/s | s/step | peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["training"]:
        lines.append(
            f"| {row['stage']} | {row['experiment']} {' '.join(row['overrides'])} | {row['batch']} | "
            f"{row['samples_per_s']:.1f} | {row['seconds_per_step']:.3f} | {row['peak_mib']:.0f} |"
        )
    lines += [
        "",
        "| sampler | passes | speech s | s per s of video | stage 3 s | stage 1 s | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["generation"]:
        lines.append(
            f"| {row['sampler']} | {row['passes']} | {row['seconds']:g} | {row['s_per_video_s']:.3f} | "
            f"{row['phases']['stage3']:.2f} | {row['phases']['stage1']:.2f} | {row['device_peak_mib']:.0f} |"
        )
    if results.get("attention"):
        a = results["attention"]
        lines += [
            "",
            f"flex vs SDPA band: max |difference| {a['max_abs_difference']:.2e}, "
            f"{a['flex_ms']:.2f} ms vs {a['sdpa_ms']:.2f} ms",
        ]
    for name, error in results["errors"].items():
        lines += ["", f"{name} FAILED: {error.splitlines()[0]}"]
    return "\n".join(lines)
