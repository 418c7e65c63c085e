"""The web app (`dawn-app`, `make app`): a portrait and speech in the browser -> a talking-head mp4.

Gradio (the `app` extra). Inputs: a portrait (upload or webcam), speech (upload or microphone), the model (a
bundle folder or hub id, or the newest runs under an experiments folder), sampling steps, guidance, seed,
temporal smoothing, and head pose and blinks from stage 2 or from a file. It reports its progress by phase
and returns the mp4 with a plot of the pose and blinks that drove it. A bad input is shown as the one line
`dawn-generate` prints for it. Models are loaded once per source and kept.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dawn_lightning.checkpoints import CheckpointError, default_checkpoints
from dawn_lightning.pipeline import DawnPipeline
from dawn_lightning.pipeline.video import GeneratedVideo

log = logging.getLogger(__name__)
NO_MODELS = (
    "No trained models under {run}/ (stage 1, 2 and 3 checkpoints): run `make demo` (about 15 min on a CPU), "
    "or start with a bundle: `dawn-app --bundle <folder or hub id>` (`dawn-export`, `dawn-import-dawn`)."
)
POSE_NAMES = ("yaw", "pitch", "roll")
ERRORS = (FileNotFoundError, ValueError, ImportError, CheckpointError)


class Models:
    """The pipelines by model source ("bundle:<id>" or "run:<folder>"), loaded on first use and kept."""

    def __init__(self, device: str = "cpu", precision: str = "fp32"):
        self.device, self.precision = device, precision
        self._loaded: dict[str, DawnPipeline] = {}
        self._lock = threading.Lock()

    @staticmethod
    def missing(source: str) -> str | None:
        """Why ``source`` cannot load (the message that says how to make models), or None."""
        kind, _, where = source.partition(":")
        if kind != "run":
            return None
        paths = default_checkpoints(where)
        if all(p.is_file() for p in paths.values()):
            return None
        return NO_MODELS.format(run=where)

    def get(self, source: str) -> DawnPipeline:
        with self._lock:
            if source not in self._loaded:
                reason = self.missing(source)
                if reason is not None:
                    raise FileNotFoundError(reason)
                kind, _, where = source.partition(":")
                options = {"device": self.device, "precision": self.precision}
                if kind == "bundle":
                    self._loaded[source] = DawnPipeline.from_pretrained(where, **options)
                else:
                    self._loaded[source] = DawnPipeline.from_run_dirs(where, **options)
            return self._loaded[source]


def pose_blink_figure(video: GeneratedVideo):
    """Head rotation (degrees) and eye openness over time, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seconds = np.arange(len(video)) / video.fps
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4), sharex=True)
    for k, name in enumerate(POSE_NAMES):
        top.plot(seconds, video.pose[:, k], label=name)
    top.set_ylabel("degrees")
    top.legend(loc="upper right", fontsize=8)
    for k, name in enumerate(("left eye", "right eye")):
        bottom.plot(seconds, video.blink[:, k], label=name)
    bottom.set_ylabel("eye openness")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def generate(
    models: Models,
    source: str,
    portrait: str | None,
    speech: str | None,
    steps: float,
    guidance: float,
    seed: float,
    smoothing: float,
    pose_blink_mode: str,
    pose_blink_file: str | None,
    out_dir: Path,
    report: Callable[[float, str], None] = lambda fraction, phase: None,
    progress: Callable | None = None,
) -> tuple[str, Any, str]:
    """One generation as the app runs it: (mp4 path, pose/blink figure, summary); bad input raises the error
    `dawn-generate` gives. ``report(fraction, phase)`` hears of each phase; ``progress`` wraps sampling
    steps."""
    from dawn_lightning.data.portrait import read_image
    from dawn_lightning.data.speech import load_speech

    if not portrait:
        raise ValueError("portrait: give an image (upload one or take one with the webcam)")
    if not speech:
        raise ValueError("speech: give a recording (upload one or record with the microphone)")
    given = None
    if pose_blink_mode == "from a file":
        if not pose_blink_file:
            raise ValueError("pose and blink: choose a .npy or .npz file, or let stage 2 make them")
        given = pose_blink_file
    report(0.0, "reading the inputs")
    audio = load_speech(speech)
    read_image(portrait)
    report(0.05, "loading the models")
    pipeline = models.get(source)
    settings = dict(pipeline.sampler_settings)
    pipeline.sampler_settings = settings | {
        "num_steps": int(steps),
        "guidance_scale": float(guidance),
        "temporal_smoothing": float(smoothing),
    }
    try:
        report(0.1, "stage 2 and stage 3: head motion, then the face's motion, all frames at once")
        video = pipeline(portrait, audio, seed=int(seed), pose_blink=given, progress=progress)
    finally:
        pipeline.sampler_settings = settings
    report(0.9, "stage 1 done; writing the mp4")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = video.save(Path(tempfile.mkdtemp(dir=out_dir)) / "dawn.mp4")
    report(1.0, "done")
    return str(path), pose_blink_figure(video), f"{len(video)} frames ({video.seconds:.2f} s of video)"


def build_app(
    models: Models, sources: list[str], out_dir: str | Path | None = None, sampler: dict | None = None
):
    """The Gradio Blocks of the app; ``sources``: the model choices ("bundle:<id>" / "run:<folder>");
    ``sampler``: the settings the sliders start at (a pipeline's ``sampler_settings``, the first model's)."""
    import gradio as gr

    start = {"num_steps": 2, "guidance_scale": 1.5, "temporal_smoothing": 0.0} | dict(sampler or {})

    out = Path(out_dir or tempfile.mkdtemp(prefix="dawn-app-"))
    notes = [reason for source in sources if (reason := Models.missing(source))]

    def run(
        source,
        portrait,
        speech,
        steps,
        guidance,
        seed,
        smoothing,
        mode,
        pose_file,
        progress=gr.Progress(),  # noqa: B008 - Gradio finds a progress tracker by its default value
    ):
        try:
            path, figure, summary = generate(
                models,
                source,
                portrait,
                speech,
                steps,
                guidance,
                seed,
                smoothing,
                mode,
                pose_file,
                out,
                report=lambda fraction, phase: progress(fraction, desc=phase),
                progress=lambda steps_: progress.tqdm(steps_, desc="stage 3: sampling the motion"),
            )
        except ERRORS as error:
            log.warning("dawn-app: %s", error)
            return None, None, f"**error:** {error}"
        return path, figure, f"done: {summary}"

    with gr.Blocks(title="DAWN talking head") as app:
        gr.Markdown(
            "# DAWN talking head\nA portrait and speech in, a talking-head video out, all frames at once."
        )
        if notes:
            gr.Markdown("\n\n".join(notes), elem_id="dawn-notes")
        with gr.Row():
            with gr.Column():
                portrait = gr.Image(
                    label="portrait", type="filepath", sources=["upload", "webcam"], elem_id="dawn-portrait"
                )
                speech = gr.Audio(
                    label="speech", type="filepath", sources=["upload", "microphone"], elem_id="dawn-speech"
                )
                source = gr.Dropdown(sources, value=sources[0], label="model", elem_id="dawn-model")
                with gr.Accordion("settings", open=False):
                    steps = gr.Slider(1, 50, value=start["num_steps"], step=1, label="sampling steps")
                    guidance = gr.Slider(
                        1.0, 4.0, value=start["guidance_scale"], step=0.1, label="guidance (1: off)"
                    )
                    seed = gr.Number(0, precision=0, label="seed")
                    smoothing = gr.Slider(
                        0.0,
                        3.0,
                        value=start["temporal_smoothing"],
                        step=0.1,
                        label="temporal smoothing (frames)",
                    )
                    mode = gr.Radio(
                        ["from stage 2", "from a file"], value="from stage 2", label="head pose and blinks"
                    )
                    pose_file = gr.File(label="pose and blink (.npy or .npz)", file_types=[".npy", ".npz"])
                button = gr.Button("generate", variant="primary", elem_id="dawn-generate")
            with gr.Column():
                video = gr.Video(label="video", elem_id="dawn-video")
                plot = gr.Plot(label="head pose and blinks")
                status = gr.Markdown(elem_id="dawn-status")
        button.click(
            run,
            [source, portrait, speech, steps, guidance, seed, smoothing, mode, pose_file],
            [video, plot, status],
        )
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
    """Serves ``app`` with a queue (progress reports) and system fonts: the default theme's web fonts would
    be fetched from the internet, which an offline cluster lacks. ``block``: False returns at once."""
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["monospace"])
    app.queue().launch(
        server_name=host, server_port=port, theme=theme, prevent_thread_lock=not block, quiet=not block
    )
