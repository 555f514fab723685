"""POST /predict through FastAPI's TestClient: the JSON of a real portrait, the cache, and every bad
upload refused with a 4xx JSON error (never a traceback or a 500)."""
from __future__ import annotations

import hashlib
import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from holistic_lab.datasets import sample_image, sample_path
from holistic_lab.serve import ServeSettings, create_app
from holistic_lab.serve.cache import ResultCache


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(ServeSettings(workspace=tmp_path_factory.mktemp("workspace")))
    with TestClient(app) as client:
        yield client


def jpeg(rgb: np.ndarray, orientation: int | None = None) -> bytes:
    image, buffer = Image.fromarray(rgb), io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def post(client, data: bytes, name: str = "upload.jpg", content_type: str = "image/jpeg"):
    return client.post("/predict", files={"image": (name, data, content_type)})


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code and body["error"]
    return body


def test_a_portrait_gives_543_keypoints_with_nulls_for_absent_parts(client):
    data = sample_path("astronaut").read_bytes()
    response = post(client, data, "astronaut.png", "image/png")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image_sha256"] == hashlib.sha256(data).hexdigest()
    assert len(body["keypoints"]) == len(body["pixels"]) == len(body["visibility"]) == 543
    assert body["present"]["pose"] and body["present"]["face"]
    assert body["variant"] == "shipped"
    pose = slice(*body["parts"]["pose"])
    assert all(row is not None and len(row) == 3 for row in body["keypoints"][pose])
    for part, present in body["present"].items():  # an absent part is null, row by row
        rows = body["keypoints"][slice(*body["parts"][part])]
        assert all(row is None for row in rows) != present
    assert {"decode", "pose_detection", "pose_landmark", "total"} <= set(body["timings_ms"])
    height, width = sample_image("astronaut").shape[:2]
    assert (body["width"], body["height"]) == (width, height)


def test_the_same_upload_is_answered_from_the_cache_without_running_the_cascade(client):
    data = jpeg(sample_image("grace_hopper"))
    first = post(client, data)
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    served = client.app.state.served
    calls = []
    for pipeline in served._current.pipelines:
        original = pipeline.process
        pipeline.process = lambda rgb, original=original: calls.append(1) or original(rgb)
    try:
        second = post(client, data, name="another-name.jpg")
    finally:
        for pipeline in served._current.pipelines:
            del pipeline.process
    assert second.status_code == 200 and second.headers["x-cache"] == "hit"
    assert second.content == first.content and calls == []


def test_exif_orientation_is_applied_so_keypoints_are_in_the_image_as_shown(client):
    upright = sample_image("grace_hopper")
    # stored turned a quarter counter-clockwise; orientation 6 says "turn it clockwise to show it"
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    turned = post(client, jpeg(stored, orientation=6)).json()
    plain = post(client, jpeg(upright)).json()
    assert (turned["width"], turned["height"]) == (upright.shape[1], upright.shape[0])
    nose_turned, nose_plain = np.array(turned["keypoints"][0][:2]), np.array(plain["keypoints"][0][:2])
    assert np.abs(nose_turned - nose_plain).max() < 0.02


def test_an_image_without_a_person_is_422_no_person(client):
    gray = np.full((240, 320, 3), 128, np.uint8)
    body = assert_error(post(client, jpeg(gray)), 422, "no_person")
    assert "no person found" in body["error"]


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (and a tiny IDAT) that claims width x height: a decompression bomb's shape."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("data, name, status, code", [
    (b"", "empty.jpg", 400, "empty_image"),
    (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "corrupt.jpg", 400, "corrupt_image"),
    (b"these are not the pixels you are looking for\n", "notes.jpg", 415, "unsupported_image"),
    (png_claiming(100_000, 100_000), "bomb.png", 413, "too_many_pixels"),
    (png_claiming(9_000, 9_000), "large.png", 413, "too_many_pixels"),  # under Pillow's ceiling, over ours
], ids=["empty", "corrupt", "text-named-jpg", "bomb-100k", "over-64mp"])
def test_bad_uploads_get_a_clear_json_error(client, data, name, status, code):
    assert_error(post(client, data, name), status, code)


def test_a_truncated_jpeg_or_png_is_refused_not_served_half_grey(client):
    data = jpeg(sample_image("grace_hopper"))
    body = assert_error(post(client, data[: len(data) * 2 // 3]), 400, "corrupt_image")
    assert "truncated" in body["error"]
    data = sample_path("astronaut").read_bytes()
    assert_error(post(client, data[: len(data) // 2], "a.png", "image/png"), 400, "corrupt_image")
    with_trailer = post(client, data + b"appended by some tool", "a.png", "image/png")
    assert with_trailer.status_code == 200, with_trailer.text


def test_the_result_cache_is_bounded_least_recently_used_first_out():
    cache = ResultCache(2)
    cache.put("a", "shipped", b"1")
    cache.put("b", "shipped", b"2")
    assert cache.get("a", "shipped") == b"1"  # now b is the least recently used
    cache.put("c", "shipped", b"3")
    assert cache.get("b", "shipped") is None and cache.get("a", "shipped") == b"1" and len(cache) == 2
    assert cache.get("a", "int8") is None  # another variant's result is another entry
    off = ResultCache(0)
    off.put("a", "shipped", b"1")
    assert off.get("a", "shipped") is None


def test_the_request_must_be_a_multipart_form_with_an_image_field(client):
    assert_error(client.post("/predict", content=b"\xff\xd8\xff", headers={"content-type": "image/jpeg"}),
                 415, "expected_multipart")
    assert_error(client.post("/predict", json={"image": "x"}), 415, "expected_multipart")
    assert_error(client.post("/predict", data={"other": "x"}, files={"photo": ("a.jpg", b"x", "image/jpeg")}),
                 400, "missing_image")
    assert_error(client.post("/predict", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}),
                 400, "bad_multipart")


def test_an_oversized_body_is_413_whether_declared_or_not(tmp_path):
    app = create_app(ServeSettings(workspace=tmp_path, max_upload_bytes=10_000))
    with TestClient(app) as client:
        big = jpeg(sample_image("grace_hopper"))
        assert len(big) > 10_000 + (64 << 10)
        assert_error(post(client, big), 413, "upload_too_large")

        def chunks():  # no Content-Length: counted as it arrives
            yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
            for _ in range(200):
                yield b"\xff" * 1000
        response = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(response, 413, "upload_too_large")
        # within the body's allowance for multipart headers, but the image itself is over the limit
        assert_error(post(client, big[:30_000]), 413, "upload_too_large")


def test_a_full_queue_is_503_and_the_waiting_request_is_then_served(tmp_path):
    app = create_app(ServeSettings(workspace=tmp_path, queue_limit=1, queue_timeout_s=20))
    data = sample_path("astronaut").read_bytes()
    with TestClient(app) as client:
        served, results = app.state.served, {}
        with served.pipeline():  # the pool's only pipeline is busy
            waiting = threading.Thread(target=lambda: results.update(waited=post(client, data, "a.png", "image/png")))
            waiting.start()
            deadline = time.monotonic() + 10
            while served._waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert served._waiting == 1
            body = assert_error(post(client, data, "a.png", "image/png"), 503, "busy")
            assert "busy" in body["error"]
            # and the event loop is not blocked by the waiting request (it waits until this block ends):
            assert client.get("/api/v1/models").status_code == 200
        waiting.join(timeout=30)
        assert results["waited"].status_code == 200
