"""The page at `/`, its static files, samples and topology, and the live video WebSocket, through
FastAPI's TestClient; frames are real ones from the videos fixture pack."""
from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from holistic_lab import datasets
from holistic_lab.images import iter_video_frames
from holistic_lab.serve import ServeSettings, create_app
from holistic_lab.serve import page
from holistic_lab.serve.page import STATIC_DIR, LatestFrame
from holistic_lab.topology import EDGE_SETS, NUM_KEYPOINTS, PARTS, edges
from holistic_lab.viz import PART_COLORS, POINT_GROUPS


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(ServeSettings(workspace=tmp_path))) as client:
        yield client


@pytest.fixture(scope="module")
def jpeg_frames() -> list[bytes]:
    """Three frames of a whole-body clip, JPEG-encoded as the page sends them."""
    path = datasets.fixture_videos()["pose_1.mp4"]
    frames = []
    for index, rgb in iter_video_frames(path):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(data.tobytes())
        if len(frames) == 3:
            break
    return frames


def test_index_is_the_page_and_loads_only_its_own_files(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert '<canvas id="canvas"' in html and 'id="file"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        assert asset in html
        served = client.get(asset)
        assert served.status_code == 200 and kind in served.headers["content-type"]
        assert served.content == (STATIC_DIR / asset.rsplit("/", 1)[1]).read_bytes()


@pytest.mark.parametrize("path", ["/static/../page.py", "/static/%2e%2e/page.py", "/static/..%2fpage.py",
                                  "/static/nothing.js"])
def test_static_files_outside_the_folder_or_missing_are_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_samples_are_listed_and_served(client):
    listed = client.get("/api/v1/samples").json()
    assert [s["name"] for s in listed] == list(datasets.sample_names())
    for sample in listed:
        response = client.get(sample["url"])
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/")
        assert response.content == datasets.sample_path(sample["name"]).read_bytes()


@pytest.mark.parametrize("name", ["astronaut.png", "..%2Fpyproject.toml", "..%2F..%2Fetc%2Fpasswd", "teacher_labels",
                                  "%2Fetc%2Fpasswd", "README.md"])
def test_samples_outside_the_list_are_refused(client, name):
    response = client.get(f"/samples/{name}")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "code"}


def test_topology_is_the_one_of_the_library(client):
    topology = client.get("/api/v1/topology").json()
    assert topology["parts"] == {name: [sl.start, sl.stop] for name, sl in PARTS.items()}
    assert topology["point_groups"] == list(POINT_GROUPS) and len(topology["point_groups"]) == NUM_KEYPOINTS
    assert topology["colors"] == {group: list(rgb) for group, rgb in PART_COLORS.items()}
    assert set(topology["edges"]) == set(EDGE_SETS)
    for name in EDGE_SETS:
        assert [(a, b) for a, b, _ in topology["edges"][name]] == list(edges(name))
        assert {group for _, _, group in topology["edges"][name]} <= set(PART_COLORS)
    left_wrist_to_elbow = [g for a, b, g in topology["edges"]["pose"] if (a, b) == (13, 15)]
    assert left_wrist_to_elbow == ["pose_left"]


class RecordedPipelines:
    """Wraps ServedModels.video_pipeline to keep the pipelines the sockets got."""

    def __init__(self, served):
        self.made, self._make = [], served.video_pipeline
        served.video_pipeline = self

    def __call__(self):
        pipeline, name = self._make()
        self.made.append(pipeline)
        return pipeline, name


def wait_until(condition, timeout_s: float = 60.0) -> bool:  # generous: a loaded CI machine
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def closed(pipeline, frame) -> bool:
    try:
        pipeline.process(frame)
    except RuntimeError as error:
        return "closed" in str(error)
    return False


def test_video_socket_tracks_real_frames_survives_bad_ones_and_closes_its_pipeline(client, jpeg_frames):
    recorded = RecordedPipelines(client.app.state.served)
    with client.websocket_connect("/ws/video") as socket:
        replies = []
        for data in jpeg_frames[:2]:
            socket.send_bytes(data)
            replies.append(socket.receive_json())
        socket.send_bytes(jpeg_frames[0][:len(jpeg_frames[0]) // 2])
        cut = socket.receive_json()
        socket.send_bytes(b"GIF89a not a frame")
        gif = socket.receive_json()
        socket.send_bytes(b"")
        empty = socket.receive_json()
        socket.send_text("hello")
        text = socket.receive_json()
        socket.send_text('{"reset": true}')
        reset = socket.receive_json()
        socket.send_bytes(jpeg_frames[2])
        after = socket.receive_json()
    for reply in replies + [after]:
        assert len(reply["keypoints"]) == NUM_KEYPOINTS and reply["present"]["pose"]
        assert all(len(point) == 3 for point in reply["keypoints"][PARTS["pose"]])
        height, width = cv2.imdecode(np.frombuffer(jpeg_frames[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert (reply["width"], reply["height"]) == (width, height)
        assert reply["server_ms"] > 0 and reply["timings_ms"]["total"] > 0 and reply["variant"] == "shipped"
    assert [r["frame"] for r in replies + [after]] == [0, 1, 2]
    assert cut["code"] == "corrupt_image" and "truncated" in cut["error"]
    assert gif["code"] == "unsupported_image"
    assert empty["code"] == "empty_image"
    assert text["code"] == "bad_message" and "reset" in text["error"]
    assert reset == {"reset": True}
    assert len(recorded.made) == 1
    rgb = np.zeros((64, 64, 3), np.uint8)
    assert wait_until(lambda: closed(recorded.made[0], rgb)), "the socket's pipeline is still open after disconnect"


def test_video_socket_refuses_frames_over_the_limits(tmp_path, jpeg_frames):
    settings = ServeSettings(workspace=tmp_path, max_upload_bytes=len(jpeg_frames[0]) - 1, max_pixels=100)
    with TestClient(create_app(settings)) as client, client.websocket_connect("/ws/video") as socket:
        socket.send_bytes(jpeg_frames[0])
        too_big = socket.receive_json()
        tiny = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes()
        socket.send_bytes(tiny)
        too_many_pixels = socket.receive_json()
    assert too_big["code"] == "too_large" and "limit" in too_big["error"]
    assert too_many_pixels["code"] == "too_many_pixels" and "20x20" in too_many_pixels["error"]


def test_each_socket_gets_its_own_pipeline(client, jpeg_frames):
    recorded = RecordedPipelines(client.app.state.served)
    with client.websocket_connect("/ws/video") as first, client.websocket_connect("/ws/video") as second:
        first.send_bytes(jpeg_frames[0])
        second.send_bytes(jpeg_frames[0])
        assert first.receive_json()["present"]["pose"] and second.receive_json()["present"]["pose"]
    assert len(recorded.made) == 2 and recorded.made[0] is not recorded.made[1]


def test_the_mailbox_keeps_only_the_newest_frame_and_ends_when_closed():
    async def scenario():
        mailbox = LatestFrame()
        mailbox.put(b"one")
        mailbox.put(b"two")
        mailbox.put(b"three")
        newest = await mailbox.take()
        mailbox.put(b"four")
        mailbox.close()
        return newest, await mailbox.take(), await mailbox.take(), mailbox.dropped

    assert asyncio.run(scenario()) == (b"three", b"four", None, 2)


def test_video_sockets_beyond_the_bound_are_told_busy(client, monkeypatch, jpeg_frames):
    monkeypatch.setattr(page, "MAX_VIDEO_CONNECTIONS", 1)
    with client.websocket_connect("/ws/video") as first:
        with client.websocket_connect("/ws/video") as second:
            assert second.receive_json()["code"] == "busy"
        first.send_bytes(jpeg_frames[0])
        assert first.receive_json()["present"]["pose"]
    # the server frees the slot once its handler has closed the pipeline, just after the client leaves
    assert wait_until(lambda: client.app.state.video_connections == 0)
    with client.websocket_connect("/ws/video") as again:  # the slot is free again
        again.send_bytes(jpeg_frames[0])
        assert again.receive_json()["present"]["pose"]
