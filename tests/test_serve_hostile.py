"""What a hostile client sends the server, each answered with a 4xx JSON error that names the
problem, never a 500: an image too long on one side for the cascade's crops, JSON nested
thousands deep or with an integer of thousands of digits, a path that is a symbolic link loop;
a non-ASCII token; a client that leaves mid-upload; video sockets left open without frames, which must not hold the slots for ever."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import queue
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from holistic_lab.serve import ServeSettings, create_app, page


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workspace")
    (folder / "loop").symlink_to(folder / "loop")
    return folder


@pytest.fixture(scope="module")
def client(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace))) as client:
        yield client


def refused(response, status: int, code: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code, body
    for word in words:
        assert word in body["error"], body
    return body


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(1, 100_000), (100_000, 1)])
def test_a_strip_of_few_pixels_but_one_side_too_long_for_the_crops_is_413_not_500(client, size):
    response = client.post("/predict", files={"image": ("strip.png", png(*size), "image/png")})
    refused(response, 413, "image_too_large", f"{size[0]}x{size[1]}")


def test_a_video_frame_too_long_on_one_side_is_refused_and_the_socket_stays_open(client):
    with client.websocket_connect("/ws/video") as socket:
        socket.send_bytes(png(1, 40_000))
        assert socket.receive_json()["code"] == "image_too_large"
        socket.send_text('{"reset": true}')
        assert socket.receive_json() == {"reset": True}


@pytest.mark.parametrize("body, words", [
    (b"[" * 100_000 + b"]" * 100_000, ["recursion"]),
    (b'{"dataset_path": "sets/a", "module": "hands", "epochs": ' + b"9" * 5000 + b"}", ["digits"]),
])
def test_start_refuses_json_nested_too_deep_or_with_a_huge_integer(client, body, words):
    response = client.post("/api/v1/finetune/start", content=body, headers={"content-type": "application/json"})
    refused(response, 400, "bad_json", *words)


@pytest.mark.parametrize("field", ["dataset_path", "checkpoint_dir"])
def test_start_refuses_a_symbolic_link_loop_by_name(client, field):
    fields = {"dataset_path": "sets/a", "module": "hands", field: "loop"}
    refused(client.post("/api/v1/finetune/start", json=fields), 400, "bad_path", field, "loop")
    assert client.get("/api/v1/jobs").json()["jobs"] == []


def test_activate_refuses_a_symbolic_link_loop_and_keeps_serving(client):
    refused(client.post("/api/v1/models/activate", json={"variant": "loop"}), 400, "bad_path", "variant")
    assert client.get("/api/v1/models").json()["active"] == "shipped"


def test_a_non_ascii_token_sent_as_utf8_is_accepted_and_a_wrong_one_refused(tmp_path):
    app = create_app(ServeSettings(workspace=tmp_path, token="sécret-ключ"))
    with TestClient(app) as client:
        for header in ("Authorization", "X-API-Token"):
            prefix = "Bearer " if header == "Authorization" else ""
            right = client.get("/api/v1/jobs", headers={header: (prefix + "sécret-ключ").encode()})
            assert right.status_code == 200, right.text
            wrong = client.get("/api/v1/jobs", headers={header: (prefix + "sécret-ключи").encode()})
            refused(wrong, 401, "unauthorized")


def receive_within(socket, timeout_s: float) -> dict:
    """The socket's next JSON message, or AssertionError after `timeout_s` (the reader is a daemon
    thread, so a server that never answers cannot hang the test run)."""
    replies = queue.Queue()
    threading.Thread(target=lambda: replies.put(socket.receive_json()), daemon=True).start()
    try:
        return replies.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"no message within {timeout_s} s") from None


def slots_free(client, timeout_s: float = 30.0) -> None:
    """Wait until every closed socket's cleanup (its pipeline closed in a thread) has ended."""
    deadline = time.monotonic() + timeout_s
    while client.app.state.video_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.app.state.video_connections == 0


def test_an_idle_video_socket_is_closed_and_frees_its_slot(client, monkeypatch):
    monkeypatch.setattr(page, "MAX_VIDEO_CONNECTIONS", 1)
    monkeypatch.setattr(page, "VIDEO_IDLE_TIMEOUT_S", 1.0)
    slots_free(client)
    with client.websocket_connect("/ws/video") as idle:
        assert receive_within(idle, 30)["code"] == "idle"  # sent nothing: told, then closed
    slots_free(client)
    with client.websocket_connect("/ws/video") as again:  # the one slot is free again
        again.send_text('{"reset": true}')
        assert again.receive_json() == {"reset": True}


@pytest.mark.parametrize("path, content_type", [("/predict", b"multipart/form-data; boundary=x"),
                                                ("/api/v1/finetune/start", b"application/json")])
def test_a_client_that_leaves_mid_upload_is_no_internal_error(client, caplog, path, content_type):
    """Called as uvicorn calls the app when the connection drops after the first bytes."""
    messages = iter([{"type": "http.request", "body": b"--x\r\n", "more_body": True}, {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "headers": [(b"host", b"testserver"), (b"content-type", content_type)],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    with caplog.at_level(logging.ERROR, logger="holistic_lab.serve"):
        asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["code"] == "client_disconnected"
    assert not caplog.records  # no "unexpected error" traceback in the server log


@pytest.mark.parametrize("path", ["/api/v1/model/prune", "/api/v1/finetune/cancel", "/api/v1/models/activate"])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_json_body_over_the_limit_is_413_before_it_is_read_in_full(client, path, chunked):
    body = b'{"variant": "' + b"x" * (2 << 20) + b'"}'
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    refused(response, 413, "body_too_large", "limit")
