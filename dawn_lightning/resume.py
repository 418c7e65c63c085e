"""Which run `dawn-train` continues when a command is run again (``resume: true``, the default).

Every run writes to its own folder (``experiments/<task>/runs/<time>``, Hydra's) and records its command-line
overrides there (``.hydra/overrides.yaml``); a run that completes leaves a ``FINISHED`` file. Run again, the
same command (the same overrides, whatever ``resume`` and ``ckpt_path`` say) looks at the earlier runs of its
task (for a sweep job: the jobs of earlier sweeps beside its own), newest first: the newest one with the same
overrides that holds a checkpoint is continued in its own folder (checkpoints, TensorBoard and CSV logs carry
on there), unless it finished. Its newest checkpoint is ``checkpoints/last.ckpt`` or the one Lightning writes
when SLURM requeues a job (``hpc_ckpt_<n>.ckpt``); it holds the optimiser, scheduler, EMA, loop counters and
random states. A run whose own folder already holds a checkpoint (a requeued job that kept its folder)
resumes from it. A run still training (its ``RUNNING`` claim names a live process of this machine) is not
continued: the same command started twice at once gives two runs.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
FINISHED = "FINISHED"
CLAIM = "RUNNING"  # "<host> <pid>" of the process that trains in the folder
DISTRIBUTED_ENV = ("LOCAL_RANK", "RANK", "SLURM_PROCID")  # set for the ranks of a distributed launch
IGNORED_KEYS = ("resume", "ckpt_path")  # overrides that do not make a run another run


def comparable(overrides: list[str]) -> list[str]:
    """The overrides that identify a run: without resume settings and Hydra's own (``hydra.*``)."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return sorted(
        o
        for o, k in zip(overrides, keys, strict=True)
        if k not in IGNORED_KEYS and k.split(".")[0] != "hydra"
    )


def run_overrides(run_dir: Path) -> list[str] | None:
    path = run_dir / ".hydra" / "overrides.yaml"
    return (yaml.safe_load(path.read_text()) or []) if path.is_file() else None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/last.ckpt`` or a SLURM requeue's ``hpc_ckpt_<n>.ckpt``, whichever was written last."""
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def find_resumable_run(output_dir: Path, overrides: list[str]) -> tuple[Path, Path] | None:
    """(run folder, checkpoint) that a run started in ``output_dir`` with ``overrides`` continues, or None."""
    output_dir = Path(output_dir).resolve()
    if newest_checkpoint(output_dir) is not None and not (output_dir / FINISHED).exists():
        return output_dir, newest_checkpoint(output_dir)
    wanted = comparable(overrides)
    for run_dir in earlier_runs(output_dir):
        recorded = run_overrides(run_dir)
        checkpoint = newest_checkpoint(run_dir)
        if recorded is None or comparable(recorded) != wanted or checkpoint is None:
            continue
        return None if (run_dir / FINISHED).exists() or in_use(run_dir) else (run_dir, checkpoint)
    return None


def standalone() -> bool:
    """Whether this process was started by hand (not as one rank of a distributed launch, whose ranks must all
    take the same decision whatever the folders' claims say)."""
    return not any(key in os.environ for key in DISTRIBUTED_ENV)


def claim(run_dir: Path) -> None:
    """Marks ``run_dir`` as trained in by this process (a standalone one), so that the same command started
    again meanwhile starts a run of its own instead of writing into this one."""
    if standalone():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / CLAIM).write_text(f"{socket.gethostname()} {os.getpid()}")


def in_use(run_dir: Path) -> bool:
    """Whether a live process of this machine other than this one and its parent (the launcher of this rank)
    trains in ``run_dir``. A claim from another machine cannot be checked: it counts as stale."""
    path = Path(run_dir) / CLAIM
    if not standalone() or not path.is_file():
        return False
    host, pid = path.read_text().split()
    if host != socket.gethostname() or int(pid) in (os.getpid(), os.getppid()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def earlier_runs(output_dir: Path) -> list[Path]:
    """The other run folders beside ``output_dir`` (``runs/<time>``) or in sibling sweeps
    (``<sweep>/<time>/<job>``), newest first by the time their overrides were recorded."""
    parent = output_dir.parent
    candidates = {*parent.glob("*/.hydra/overrides.yaml"), *parent.parent.glob("*/*/.hydra/overrides.yaml")}
    runs = {p.parent.parent.resolve() for p in candidates} - {output_dir.resolve()}
    return sorted(runs, key=lambda run: (run / ".hydra" / "overrides.yaml").stat().st_mtime, reverse=True)


def mark_finished(run_dir: Path) -> None:
    (Path(run_dir) / FINISHED).touch()
