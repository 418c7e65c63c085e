"""A preprocessing run end to end with a stub face backend: outcomes of bad inputs, resume, parallel, dry run.

(The real backend on real clips is in test_preprocess_face.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.preprocess import run
from dawn_lightning.data.preprocess.run import PreprocessError, preprocess
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.validate import validate_store
from tests.preprocess_videos import settings, store_config, talking_video

FEATURES = LogMelFeatures(n_mels=8)


@pytest.fixture
def videos(tmp_path):
    """Two good videos of two speakers, and one each: without audio, without a face, truncated."""
    root = tmp_path / "videos"
    talking_video(root / "alice" / "talk1.mp4", seconds=2.0)
    talking_video(root / "bob" / "talk.mov", seconds=1.6)
    talking_video(root / "carol" / "silent.mp4", audio=False)
    talking_video(root / "dave" / "dark.mp4", brightness=5)
    whole = talking_video(tmp_path / "whole.mp4").read_bytes()
    (root / "erin").mkdir()
    (root / "erin" / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    return root


def _run(videos, out, workers=1, **kwargs):
    chosen = settings()
    return preprocess(
        videos, out, store_config(chosen, FEATURES), FEATURES, chosen, workers, progress=False, **kwargs
    )


def test_bad_inputs_have_their_documented_outcomes_and_the_store_is_valid(stub_face, videos, tmp_path):
    summary = _run(videos, tmp_path / "store", workers=2)
    status = {r.path.split("videos/")[1]: (r.status, r.reason) for r in summary.results}
    assert status["alice/talk1.mp4"] == ("done", "")
    assert status["bob/talk.mov"] == ("done", "")
    assert status["carol/silent.mp4"][0] == "skipped" and "no audio stream" in status["carol/silent.mp4"][1]
    assert status["dave/dark.mp4"] == ("skipped", "no face found in any frame")
    assert status["erin/cut.mp4"][0] == "failed" and "cut.mp4" in status["erin/cut.mp4"][1]
    assert validate_store(tmp_path / "store") == []
    store = ClipStore(tmp_path / "store")
    assert sorted(c.clip_id for c in store.clips) == ["alice_talk1_000", "bob_talk_000"]
    assert [c.num_frames for c in sorted(store.clips, key=lambda c: c.clip_id)] == [50, 40]
    assert {c.identity for c in store.clips} == {"alice", "bob"}
    assert [f["clip_id"] for f in store.index["failed"]] == ["erin_cut"]
    written = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert written["videos"]["done"] == 2 and "erin/cut.mp4" in next(iter(written["failed"]))


def test_interrupted_run_resumes_without_duplicates(stub_face, videos, tmp_path, monkeypatch):
    _run(videos, tmp_path / "clean")
    real_process = run.process_video
    calls = []

    def killed_on_second_video(job, *args):
        calls.append(job.video_id)
        if len(calls) == 2:
            stale = tmp_path / "store" / "clips" / f".{job.video_id}_000.999.tmp"
            stale.mkdir()  # what a kill in the middle of writing a clip leaves
            raise KeyboardInterrupt
        return real_process(job, *args)

    monkeypatch.setattr(run, "process_video", killed_on_second_video)
    with pytest.raises(KeyboardInterrupt):
        _run(videos, tmp_path / "store")
    monkeypatch.setattr(run, "process_video", real_process)
    resumed = _run(videos, tmp_path / "store")
    assert [r.video_id for r in resumed.results if r.status == "finished"] == [calls[0]]
    clips = [[c.clip_id for c in ClipStore(root).clips] for root in (tmp_path / "store", tmp_path / "clean")]
    assert clips[0] == clips[1] and clips[0]
    assert not list((tmp_path / "store" / "clips").glob(".*"))
    again = _run(videos, tmp_path / "store")  # everything finished but the truncated video, retried
    assert {r.status for r in again.results} == {"finished", "failed"}
    assert validate_store(tmp_path / "store") == []


def test_dry_run_writes_nothing_and_other_configs_are_refused(stub_face, videos, tmp_path):
    dry = _run(videos, tmp_path / "store", dry_run=True)
    assert {r.status for r in dry.results} == {"todo"} and len(dry.results) == 5
    assert "speaker alice, split train" in dry.results[0].reason
    assert not (tmp_path / "store").exists()
    _run(videos, tmp_path / "store")
    assert {r.status for r in _run(videos, tmp_path / "store", dry_run=True).results} == {"finished", "todo"}
    other = settings(size=48)
    with pytest.raises(StoreError, match="another config"):
        preprocess(videos, tmp_path / "store", store_config(other, FEATURES), FEATURES, other, progress=False)


def test_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreprocessError, match="empty: no videos"):
        _run(tmp_path / "empty", tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_configs_compose_for_every_layout_and_the_cli_dry_run_lists_videos(videos, tmp_path):
    from hydra.utils import instantiate

    from dawn_lightning.config import compose

    for layout in ("hdtf", "voxceleb", "generic"):
        cfg = compose("preprocess", [f"preprocess={layout}", "input=in", "output=out"])
        assert cfg.preprocess.layout == layout
        assert isinstance(instantiate(cfg.audio_features), LogMelFeatures)
    out = subprocess.run(
        [sys.executable, "-c", "from dawn_lightning.cli.preprocess import main; main()"]
        + [f"input={videos}", f"output={tmp_path / 'store'}", "dry_run=true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "todo     " in out.stdout and "alice/talk1.mp4: speaker alice, split" in out.stdout
    assert "(dry run)" in out.stdout and not (tmp_path / "store").exists()


def test_splits_come_from_the_speakers_that_gave_clips(stub_face, tmp_path):
    """10 speakers, 4 of whose videos give nothing (corrupt, empty, no audio, no face): val and test are made
    from the 6 that gave clips, so neither is empty, and the store is valid for training."""
    root = tmp_path / "videos"
    for name in ("ann", "ben", "cat", "dan", "eve", "fay"):
        talking_video(root / name / "talk.mp4", seconds=1.2)
    whole = talking_video(tmp_path / "whole.mp4", seconds=1.2).read_bytes()
    (root / "gus").mkdir()
    (root / "gus" / "corrupt.mp4").write_bytes(whole[: len(whole) // 3])
    (root / "hal").mkdir()
    (root / "hal" / "empty.mp4").write_bytes(b"")
    talking_video(root / "ivy" / "silent.mp4", seconds=1.2, audio=False)
    talking_video(root / "jon" / "dark.mp4", seconds=1.2, brightness=5)
    chosen = settings()
    config = store_config(chosen, FEATURES)
    config["split"] |= {"val": 0.1, "test": 0.1}
    summary = preprocess(root, tmp_path / "store", config, FEATURES, chosen, progress=False)
    assert sum(r.status == "done" for r in summary.results) == 6
    store = ClipStore(tmp_path / "store")
    splits = {s: {c.identity for c in store.split(s)} for s in ("train", "val", "test")}
    assert len(splits["val"]) == 1 and len(splits["test"]) == 1 and len(splits["train"]) == 4
    assert set().union(*splits.values()) == {"ann", "ben", "cat", "dan", "eve", "fay"}
    for clip in store.clips:  # each clip's own record agrees with the index
        assert (
            json.loads((store.root / "clips" / clip.clip_id / "meta.json").read_text())["split"] == clip.split
        )
    assert validate_store(tmp_path / "store") == []


def test_validate_reports_an_empty_split_that_training_needs(stub_face, videos, tmp_path):
    chosen = settings()
    config = store_config(chosen, FEATURES)
    config["split"]["val"] = 0.0
    preprocess(videos, tmp_path / "store", config, FEATURES, chosen, progress=False)
    problems = [str(p) for p in validate_store(tmp_path / "store", decode=False)]
    assert len(problems) == 1 and problems[0].startswith(
        "store: split 'val' has no clips, and training needs"
    )
    assert "split.val" in problems[0]


def test_a_rerun_with_other_settings_is_refused_in_one_line(stub_face, videos, tmp_path):
    _run(videos, tmp_path / "store")
    model = tmp_path / "face_landmarker.task"
    model.write_bytes(b"not read: the store refuses the run first")
    script = Path(sys.executable).parent / "dawn-preprocess"
    result = subprocess.run(
        [
            str(script),
            f"input={videos}",
            f"output={tmp_path / 'store'}",
            "size=48",
            f"face.model_path={model}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stdout + result.stderr
    assert lines[0].startswith("error ") and "this store was made with another config" in lines[0]
