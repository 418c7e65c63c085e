"""`dawn-app` in a real browser: Debian's headless Chromium driven by Playwright (nothing downloaded at run
time) uploads a portrait and a wav, presses generate and receives a playable mp4 whose frames match the
speech; a silent wav shows `dawn-generate`'s one-line error; a missing model says how to make one."""

import os
import shutil
import socket
from urllib.parse import urljoin

import av
import numpy as np
import pytest
from PIL import Image

from dawn_lightning import SAMPLES_PER_FRAME
from dawn_lightning.bundles import export_bundle
from tests.pipeline_fixtures import portrait, speech, write_wav

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
gr = pytest.importorskip("gradio", reason="gradio is not installed (the app extra: make setup installs it)")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the app extra)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (make setup installs Debian's chromium)"
)
TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(checkpoints, tmp_path_factory):
    from dawn_lightning.app import Models, build_app, launch

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    root = tmp_path_factory.mktemp("app")
    bundle = export_bundle(
        root / "bundle", checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"]
    )
    empty = root / "no-runs"
    app = build_app(
        Models("cpu"), [f"bundle:{bundle}", f"run:{empty}"], out_dir=root / "out", sampler={"num_steps": 2}
    )
    port = free_port()
    launch(app, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture
def page(served):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(served, wait_until="domcontentloaded")
        yield page
        browser.close()


def upload_and_generate(page, image_path, wav_path) -> None:
    page.locator("#dawn-portrait input[type=file]").set_input_files(str(image_path))
    page.locator("#dawn-portrait img").first.wait_for()  # the upload has arrived
    page.locator("#dawn-speech input[type=file]").set_input_files(str(wav_path))
    page.locator("#dawn-speech audio, #dawn-speech .waveform-container").first.wait_for(state="attached")
    page.click("#dawn-generate")


def test_a_portrait_and_a_wav_become_a_playable_mp4_in_the_browser(page, served, tmp_path):
    image = tmp_path / "face.png"
    Image.fromarray(portrait()).save(image)
    audio = speech(1.2)[0]
    wav = write_wav(tmp_path / "speech.wav", audio)
    assert "make demo" in page.locator("#dawn-notes").inner_text()  # the empty run folder is explained
    upload_and_generate(page, image, wav)
    video = page.locator("#dawn-video video")
    video.wait_for()
    src = video.get_attribute("src")
    body = page.request.get(urljoin(served, src)).body()
    mp4 = tmp_path / "received.mp4"
    mp4.write_bytes(body)
    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(mp4)) as container:
        assert container.streams.audio, "the mp4 carries the speech"
    assert len(frames) == len(audio) // SAMPLES_PER_FRAME
    assert np.std(frames[0]) > 1  # a picture, not a blank frame
    assert "done" in page.locator("#dawn-status").inner_text()


def test_a_silent_wav_shows_the_command_lines_error(page, tmp_path):
    image = tmp_path / "face.png"
    Image.fromarray(portrait()).save(image)
    wav = write_wav(tmp_path / "silent.wav", np.zeros(16_000, np.float32))
    upload_and_generate(page, image, wav)
    status = page.locator("#dawn-status")
    status.filter(has_text="error").wait_for()
    assert "the audio is silent" in status.inner_text()
    assert page.locator("#dawn-video video").count() == 0
