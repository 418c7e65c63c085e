"""`dawn-bench stage3`: the A2V denoiser benchmark on tiny sizes (in this process; the CLI isolates each)."""

import json

import torch

from dawn_lightning.benchmarks import audio_to_motion
from dawn_lightning.cli.bench import main

ROW_KEYS = {
    "size",
    "attention",
    "window",
    "frames",
    "passes",
    "pass_s",
    "pass_ms_per_frame",
    "sampling_s",
    "sampling_measured",
    "peak_mib",
    "process_peak_mib",
}


def test_model_sizes_follow_the_configs():
    paper, tiny = audio_to_motion.model_sizes(128), audio_to_motion.model_sizes(64)
    assert paper["dim"] == 64 and paper["window"] == 40 and paper["dim_mults"] == [1, 2, 4, 8]
    assert tiny["dim"] == 32 and tiny["window"] == 40 and tiny["dim_mults"] == [1, 2, 4, 8]
    net, inputs = audio_to_motion.build(128, "full", 3)
    assert net.unet.config["window"] is None and net.unet.channels == 3 + 256 + 16
    assert inputs["x_t"].shape == (1, 3, 3, 32, 32) and inputs["audio"].shape == (1, 3, 1024)


def test_tiny_rows(tmp_path):
    threads = torch.get_num_threads()
    results = audio_to_motion.stage3(
        sizes=(64,), frames=(4, 8), steps=1, threads=1, repeats=1, isolate=False, log=lambda _: None
    )
    assert torch.get_num_threads() == threads
    rows = results["rows"]
    assert [(r["attention"], r["frames"]) for r in rows] == [
        ("banded", 4),
        ("banded", 8),
        ("full", 4),
        ("full", 8),
    ]
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert row["pass_s"] > 0 and row["sampling_s"] > 0 and row["sampling_measured"]
        assert row["sampling_finite"] and row["process_peak_mib"] > 0
    assert rows[0]["window"] == 40 and rows[2]["window"] is None
    table = audio_to_motion.markdown(results)
    assert table.count("| 64 px |") == 4 and "94.9 s / pass" in table


def test_reference_comparison_and_linearity():
    rows = [
        {"size": 128, "attention": "banded", "frames": f, "pass_s": s, "peak_mib": m}
        for f, s, m in ((100, 2.0, 100.0), (200, 4.0, 200.0), (400, 8.0, 400.0))
    ]
    rows = [audio_to_motion._with_reference(r) for r in rows]
    assert rows[1]["speedup"] == 29.619 / 4.0 and rows[1]["target_met"]
    assert rows[2]["speedup"] == 94.872 / 8.0 and rows[2]["target_met"]
    assert "target_met" not in rows[0]
    (check,) = audio_to_motion.linearity(rows)
    assert check["time_ratio"] == 4.0 and check["memory_ratio"] == 4.0 and check["linear"]


def test_cli_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    def fake_stage3(**kwargs):
        row = {"size": 64, "attention": "banded", "frames": 8, "note": "skipped: test"}
        return {"steps": kwargs["steps"], "rows": [row], "linearity": [], "reference_source": "notes"}

    monkeypatch.setattr(audio_to_motion, "stage3", fake_stage3)
    out = tmp_path / "bench" / "s3.json"
    assert main(["stage3", "--sizes", "64", "--frames", "8", "--steps", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["note"] == "skipped: test"
    assert "skipped: test" in out.with_suffix(".md").read_text()
    assert "skipped: test" in capsys.readouterr().out
