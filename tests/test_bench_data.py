"""`dawn-bench data`: the generated index, and both parts of the benchmark on tiny sizes (start-up in this
process; the CLI isolates each data module)."""

import json

import numpy as np
import pytest
import torch

from dawn_lightning.benchmarks import data
from dawn_lightning.cli.bench import main
from dawn_lightning.data.datamodules import VideoClipDataModule
from dawn_lightning.data.store import FORMAT_VERSION, REQUIRED_SIGNALS, ClipStore


def test_generated_index_is_a_store(tmp_path):
    store = ClipStore(data.write_index(tmp_path / "index", 2000, speakers=60))
    assert store.index["format_version"] == FORMAT_VERSION and store.problems == []
    assert (
        len(store.clips) == store.index["num_clips"] == 2000 and not (tmp_path / "index" / "clips").exists()
    )
    ids = store.table.clip_id
    assert (ids[1:] > ids[:-1]).all()  # sorted and unique
    first = store.clips[0]
    assert first.clip_id.startswith(first.identity + "_") and len(first.clip_id) == len(
        "id00012_21Uxsk56VDQ_00001_000"
    )
    assert 50 <= store.table.num_frames.min() and store.table.num_frames.max() <= 500
    counts = store.index["splits"]
    assert sum(counts.values()) == 2000 and counts["train"] > 4 * counts["val"] > 0 and counts["test"] > 0
    speakers = [set(store.table.identity[store.table.split == k].tolist()) for k in range(3)]
    assert (
        not (speakers[0] & speakers[1])
        and not (speakers[0] & speakers[2])
        and not (speakers[1] & speakers[2])
    )
    assert set(store.statistics) == set(REQUIRED_SIGNALS)
    assert store.statistics["pose"]["frames"] == int(store.table.num_frames[store.table.split == 0].sum())
    module = VideoClipDataModule(str(tmp_path / "index"), num_frames=20)
    module.setup("fit")
    assert len(module.train_dataloader().sampler) == counts["train"]


def test_tiny_run(tmp_path):
    threads, lines = torch.get_num_threads(), []
    results = data.data_benchmark(
        clips=2000,
        sizes=(32,),
        work=str(tmp_path / "work"),
        samples={"stage1_pairs": 4, "stage3_clips": 2},
        seconds=(1.2, 1.4),
        isolate=False,
        log=lines.append,
    )
    assert torch.get_num_threads() == threads
    assert results["cpu"] and results["cpu"] != "unknown"
    startup = results["startup"]
    assert startup["clips"] == 2000 and startup["index_write_s"] > 0 and startup["clips_npz_mib"] > 0
    rows = {(r["stage"], r["samples_per_clip"]): r for r in startup["rows"]}
    assert set(rows) == {("stage1_pairs", 1), ("stage1_pairs", 32), ("stage3_clips", 1), ("stage3_clips", 8)}
    for (stage, per_clip), row in rows.items():
        assert row["train_samples"] == per_clip * rows[(stage, 1)]["train_samples"] > 0 and row["batch"] == 8
        steps = [row[f"{s}_s"] for s in ("construct", "setup", "statistics", "loader", "order")]
        assert all(s > 0 for s in steps) and row["total_s"] == pytest.approx(sum(steps), rel=0.05, abs=0.01)
        assert 0 < row["baseline_mib"] <= row["peak_mib"]
        assert row["meets_goal"] == (row["total_s"] < 10 and row["peak_mib"] < 2048)
    (pairs, clips) = results["throughput"]["rows"]
    assert (pairs["stage"], pairs["size"], pairs["samples"]) == ("stage1_pairs", 32, 4)
    assert (clips["stage"], clips["samples"]) == ("stage3_clips", 2)
    for row in (pairs, clips):
        assert all(np.isfinite(row[k]) and row[k] > 0 for k in data.LAYOUTS)
    stores = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert len(stores) == 2 and stores[1] == stores[0] + "-packed"
    assert ClipStore(tmp_path / "work" / stores[1]).packed
    table = data.markdown(results)
    assert results["cpu"] in table and "2,000 clips" in table and table.count("| stage1_pairs") == 3
    assert len(lines) == 6


def test_cli(tmp_path, capsys):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "data",
                "--clips",
                "0",
                "--pair-samples",
                "0",
                "--clip-samples",
                "0",
                "--shard-input",
                "",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "data.json").read_text())
    assert results["throughput"]["rows"] == [] and "startup" not in results and results["cpu"]
    assert f"CPU: {results['cpu']}" in capsys.readouterr().out and (out / "data.md").exists()
    with pytest.raises(SystemExit):
        main(["stage3", "--sizes", "256", "--out", str(tmp_path)])
