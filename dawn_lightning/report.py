"""One table for a sweep: every run of a Hydra multirun folder with its overrides, final metrics and speed, as
markdown and CSV, and a plot (`dawn-report`, `make report`).

Each run of `dawn-train` leaves ``summary.json`` in its folder (`write_summary`): its last logged metrics,
the metric it returned to the sweeper, the wall time and steps of fitting; each setting of a sampling sweep
(`dawn-evaluate -m`) leaves its scores and its network passes per video. A run without one (killed, or still
running) is read from its TensorBoard event files instead and marked unfinished.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml

SUMMARY = "summary.json"
SPEED_KEYS = ("train/samples_per_sec", "fit_seconds", "steps", "passes")  # passes: stage 3's per video


def write_summary(run_dir: Path, metrics: dict[str, float], optimized_metric: str | None, **facts) -> Path:
    """``summary.json`` of a finished run: its metrics (name -> value), the name of the optimised one, and
    other ``facts`` (fit_seconds, steps, ...)."""
    path = Path(run_dir) / SUMMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"metrics": metrics, "optimized_metric": optimized_metric, **facts}
    path.write_text(json.dumps(record, indent=2, sort_keys=True))
    return path


def tensorboard_scalars(run_dir: Path) -> dict[str, float]:
    """The last value of every scalar in a run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, tuple[float, float]] = {}  # tag -> (wall time, value)
    for folder in {p.parent for p in Path(run_dir).rglob("events.out.tfevents.*")}:
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            last = accumulator.Scalars(tag)[-1]
            if tag not in scalars or last.wall_time > scalars[tag][0]:
                scalars[tag] = (last.wall_time, last.value)
    return {tag: value for tag, (_, value) in scalars.items()}


def read_run(run_dir: Path) -> dict:
    """{"run", "overrides" (key -> value), "status", "metrics", "optimized_metric", "fit_seconds",
    "steps"} of one run folder."""
    run_dir = Path(run_dir)
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in overrides)
    row = {"run": run_dir.name, "overrides": pairs}
    if (run_dir / SUMMARY).is_file():
        return row | {"status": "finished"} | json.loads((run_dir / SUMMARY).read_text())
    return row | {"status": "unfinished", "metrics": tensorboard_scalars(run_dir), "optimized_metric": None}


def collect(sweep_dir: Path) -> list[dict]:
    """Every run of a sweep folder (its job folders: those holding a Hydra run), in job order."""
    runs = [p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml")]
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no runs (folders with .hydra/overrides.yaml) there")
    return [
        read_run(r)
        for r in sorted(
            runs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name)
        )
    ]


def table(rows: list[dict], metric: str | None = None) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, cells, shared overrides): the overrides that vary between runs, ``metric`` (default: the
    runs' optimised metric) first among the validation metrics, then the speed."""
    keys = sorted({k for r in rows for k in r["overrides"]})
    varying = [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]
    shared = [f"{k}={rows[0]['overrides'][k]}" for k in keys if k not in varying]
    metric = metric or next((r["optimized_metric"] for r in rows if r.get("optimized_metric")), None)
    names = sorted({k for r in rows for k in r["metrics"] if k.startswith(("val/", "test/"))})
    names = ([metric] if metric else []) + [n for n in names if n != metric]
    values = [{**r["metrics"], **{k: r[k] for k in SPEED_KEYS[1:] if k in r}} for r in rows]
    speed = [k for k in SPEED_KEYS if any(v.get(k) is not None for v in values)]  # training or sampling
    header = ["run", *varying, "status", *names, *speed]
    cells = [
        [r["run"], *(r["overrides"].get(k, "") for k in varying), r["status"]]
        + [_format(v.get(n)) for n in (*names, *speed)]
        for r, v in zip(rows, values, strict=True)
    ]
    return header, cells, shared


def _format(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_report(sweep_dir: Path, out_dir: Path | None = None, metric: str | None = None) -> dict[str, Path]:
    """report.md, report.csv and report.png of a sweep folder (in ``out_dir``, default the sweep folder)."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = collect(sweep_dir)
    header, cells, shared = table(rows, metric)
    paths = {"md": out_dir / "report.md", "csv": out_dir / "report.csv", "png": out_dir / "report.png"}
    with open(paths["csv"], "w", newline="") as handle:
        csv.writer(handle).writerows([header, *cells])
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(rows)} runs; shared overrides: {' '.join(shared) or 'none'}",
        "",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    paths["md"].write_text("\n".join(lines) + "\n")
    plot(header, cells, paths["png"])
    return paths


def plot(header: list[str], cells: list[list[str]], path: Path) -> None:
    """Bars of the first metric column and of the training speed, one bar per run, labelled by its varying
    overrides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first_metric = header.index("status") + 1
    labels = [" ".join(c[1 : first_metric - 1]) or c[0] for c in cells]
    speed = next(
        (h for h in header if h == "train/samples_per_sec" or h.endswith("seconds_per_output_second")), None
    )
    columns = [header[first_metric]] + ([speed] if speed else []) if first_metric < len(header) else []
    figure, axes = plt.subplots(
        1, len(columns), figsize=(5 * len(columns), 0.5 * len(cells) + 2), squeeze=False
    )
    for axis, name in zip(axes[0], columns, strict=True):
        column = header.index(name)
        values = [float(c[column]) if c[column] else float("nan") for c in cells]
        axis.barh(range(len(cells)), values, color="tab:blue")
        axis.set_yticks(range(len(cells)), labels)
        axis.invert_yaxis()
        axis.set_title(name)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def latest_sweep(experiments_dir: Path) -> Path:
    """The newest sweep folder under ``experiments_dir``: ``sweeps/<name>/<time>`` (the sweep configs'),
    ``<task>/multiruns/<time>``, or ``evaluation/sweeps/<name>/<time>`` (dawn-evaluate -m)."""
    root = Path(experiments_dir)
    patterns = ("sweeps/*/*", "*/multiruns/*", "evaluation/sweeps/*/*")  # training and sampling sweeps
    found = [p for pattern in patterns for p in root.glob(pattern) if p.is_dir()]
    if not found:
        raise FileNotFoundError(f"{root}: no sweeps there (run one: make sweep SWEEP=window)")
    return max(found, key=lambda p: p.stat().st_mtime)
