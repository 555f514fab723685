"""The page in a real browser: Debian's chromium driven by Playwright (no browser download) against
a real uvicorn server on a free loopback port. Uploads a fixture photograph through the file input,
waits for the canvas, checks the drawn points through `window.lastResult` and the canvas pixels,
toggles a part off, streams a fixture clip over the WebSocket, and takes screenshots into the
test's temporary folder. Skipped, with the reason, where chromium or Playwright is missing."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from holistic_lab import datasets
from holistic_lab.serve.server_process import ServerProcess
from holistic_lab.topology import NUM_KEYPOINTS
from holistic_lab.viz import PART_COLORS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's chromium "
                                "(`apt-get install chromium`; .ci/run does when root) to run the browser tests")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The URL of `holistic-lab serve` in a child process on a free loopback port (stopped afterwards)."""
    with ServerProcess(tmp_path_factory.mktemp("workspace")) as running:
        yield running.url.rstrip("/")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright;"
                                   " its browser download is not needed: the test drives Debian's chromium)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium refuses to sandbox as root
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, server):
    """The page, loaded and ready; fails the test on any script error or console error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.problems = problems = []  # a test expecting an error response removes its console line
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.goto(server + "/")
    page.wait_for_function("() => ['ready', 'error'].includes(document.body.dataset.state)", timeout=30_000)
    yield page
    context.close()
    assert not problems, problems


def wait_drawn(page, timeout_ms: int = 120_000) -> dict:
    page.wait_for_function("() => ['drawn', 'error'].includes(document.body.dataset.state)", timeout=timeout_ms)
    state = page.evaluate("document.body.dataset.state")
    assert state == "drawn", f"the page shows an error: {page.text_content('#status')}"
    return page.evaluate("window.lastResult")


def canvas_rgb(page, xy) -> list[int]:
    x, y = (round(v) for v in xy)
    return page.evaluate(f"Array.from(document.getElementById('canvas').getContext('2d')"
                         f".getImageData({x}, {y}, 1, 1).data.slice(0, 3))")


def person_photo() -> Path:
    return next(path for path, label in datasets.hagrid_frames() if label == "call")


def test_an_uploaded_photo_is_drawn_with_its_skeleton(page, tmp_path):
    page.set_input_files("#file", str(person_photo()))
    result = wait_drawn(page)
    assert len(result["keypoints"]) == NUM_KEYPOINTS and result["present"]["pose"]
    size = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
    assert size == [result["width"], result["height"]]
    distinct = page.evaluate("""(() => {
        const c = document.getElementById('canvas');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length; i += 4 * 97) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        return seen.size;
    })()""")
    assert distinct > 100, "the canvas is blank or a flat colour"
    # the shoulders' dots are drawn in their sides' colours, where the JSON puts them
    for index, group in ((LEFT_SHOULDER, "pose_left"), (RIGHT_SHOULDER, "pose_right")):
        assert canvas_rgb(page, result["pixels"][index]) == list(PART_COLORS[group])
    assert page.text_content("#timings").count("total") == 1
    assert "found" in page.text_content("#presence")
    page.screenshot(path=tmp_path / "page.png", full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000

    page.uncheck("#toggles input[name=pose]")
    page.wait_for_function("() => document.body.dataset.state === 'drawn'")
    assert canvas_rgb(page, result["pixels"][LEFT_SHOULDER]) != list(PART_COLORS["pose_left"])


def test_a_picked_sample_is_drawn(page):
    page.select_option("#sample", "grace_hopper")
    result = wait_drawn(page)
    assert result["present"]["face"] and (result["width"], result["height"]) == (512, 600)


def test_an_error_is_shown_from_the_json(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    page.set_input_files("#file", str(fake))
    page.wait_for_function("() => document.body.dataset.state === 'error'", timeout=30_000)
    assert "not a JPEG, PNG" in page.text_content("#status")
    page.problems[:] = [p for p in page.problems if "status of 415" not in p]


def test_a_clip_streams_over_the_websocket(page, tmp_path):
    page.set_input_files("#clip", str(datasets.fixture_videos()["pose_1.mp4"]))
    page.wait_for_function("() => window.lastResult && window.lastResult.frame >= 2 || document.body.dataset.state === "
                           "'error'", timeout=120_000)
    result = wait_drawn(page)
    assert result["present"]["pose"] and result["server_ms"] > 0
    assert page.text_content("#fps").endswith("fps")
    page.screenshot(path=tmp_path / "video.png")
