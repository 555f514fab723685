"""The model endpoints through TestClient: the listing, activation of a good variant (served from
the next request on), refusal of a broken or outside one (the old one keeps serving), the token."""
from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from holistic_lab.datasets import sample_path
from holistic_lab.mediapipe_models import model_path
from holistic_lab.serve import ServeSettings, create_app
from holistic_lab.variants import write_variant

TOKEN = "s3cret-token"


def make_variant(workspace, name: str):
    """A real variant: the shipped hand re-crop model under another name (small, and it runs)."""
    folder = workspace / "variants" / name
    write_variant(folder, {"hand_recrop": model_path("hand_recrop")}, name=name, made_by={"command": "test"},
                  metrics={"hand_recrop": {"latency_ms": 1.5}})
    return folder


@pytest.fixture
def workspace(tmp_path):
    make_variant(tmp_path, "copy")
    broken = make_variant(tmp_path, "bad-checksum")
    (broken / "hand_recrop.tflite").write_bytes(b"changed")
    garbage = make_variant(tmp_path, "not-a-model")  # checksum right, model not a model
    (garbage / "hand_recrop.tflite").write_bytes(b"\x00" * 64)
    manifest = json.loads((garbage / "manifest.json").read_text())
    manifest["stages"]["hand_recrop"]["sha256"] = hashlib.sha256(b"\x00" * 64).hexdigest()
    (garbage / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def predict_variant(client) -> str:
    data = sample_path("astronaut").read_bytes()
    response = client.post("/predict", files={"image": ("a.png", data, "image/png")})
    assert response.status_code == 200, response.text
    return response.json()["variant"]


def test_the_listing_has_shipped_and_each_variant_with_sizes_and_what_is_broken(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace))) as client:
        body = client.get("/api/v1/models").json()
    models = {model["name"] if model["error"] is None else model["path"]: model for model in body["models"]}
    assert body["active"] == "shipped" and models["shipped"]["active"]
    shipped = models["shipped"]
    assert shipped["total_bytes"] == sum(stage["bytes"] for stage in shipped["stages"].values()) > 1_000_000
    copy = models["copy"]
    assert copy["path"] == "variants/copy" and not copy["active"]
    assert copy["stages"]["hand_recrop"] == {"kind": "float32", "bytes": model_path("hand_recrop").stat().st_size,
                                             "metrics": {"latency_ms": 1.5}}
    assert "sha256" in models["variants/bad-checksum"]["error"]


def test_activating_a_variant_serves_it_from_the_next_request(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace))) as client:
        assert predict_variant(client) == "shipped"
        response = client.post("/api/v1/models/activate", json={"variant": "copy"})
        assert response.status_code == 200, response.text
        assert response.json() == {"active": "copy", "path": "variants/copy"}
        assert predict_variant(client) == "copy"
        listed = {model["name"]: model["active"] for model in client.get("/api/v1/models").json()["models"]}
        assert listed["copy"] and not listed["shipped"]
        assert client.post("/api/v1/models/activate", json={"variant": "shipped"}).json()["active"] == "shipped"
        assert predict_variant(client) == "shipped"


@pytest.mark.parametrize("variant, status, code, named", [
    ("bad-checksum", 422, "broken_variant", "sha256"),
    ("not-a-model", 422, "broken_variant", "not-a-model"),
    ("missing", 400, "unknown_variant", "missing"),
    ("../outside", 400, "bad_path", "outside"),
    ("/etc", 400, "bad_path", "/etc"),
])
def test_a_broken_missing_or_outside_variant_is_refused_and_the_old_one_keeps_serving(workspace, variant, status,
                                                                                        code, named):
    with TestClient(create_app(ServeSettings(workspace=workspace))) as client:
        assert client.post("/api/v1/models/activate", json={"variant": "copy"}).status_code == 200
        response = client.post("/api/v1/models/activate", json={"variant": variant})
        assert response.status_code == status, response.text
        assert response.json()["code"] == code and named in response.json()["error"]
        assert predict_variant(client) == "copy"


def test_bad_activation_bodies_are_400(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace))) as client:
        for body in ({}, {"variant": ""}, {"variant": "copy", "extra": 1}, {"variant": 3}):
            response = client.post("/api/v1/models/activate", json=body)
            assert response.status_code == 400 and response.json()["code"] == "invalid_request", body
        response = client.post("/api/v1/models/activate", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 400


def test_the_model_endpoints_need_the_token_when_one_is_set(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace, token=TOKEN))) as client:
        assert client.get("/api/v1/models").status_code == 401
        wrong = client.post("/api/v1/models/activate", json={"variant": "copy"}, headers={"X-API-Token": "nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
        assert client.get("/api/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        ok = client.post("/api/v1/models/activate", json={"variant": "copy"}, headers={"X-API-Token": TOKEN})
        assert ok.status_code == 200


def write_bench_report(path, date: str, medians: dict[str, float]) -> None:
    """A `holistic-lab bench` report.json measuring `medians` (variant path -> end-to-end ms) beside MediaPipe."""
    from holistic_lab.bench import ReportBuilder, median_ratio
    from holistic_lab.bench.machine import machine_info
    from holistic_lab.bench.schema import Ratio, timing

    settings = {"images": "fixtures", "n_images": 2, "repeats": 3, "warmup": 1, "threads": [1], "quick": True,
                "command": "holistic-lab bench", "date": date}
    builder = ReportBuilder(path, machine_info(), settings)
    reference = [100.0, 102.0, 98.0]
    builder.add_variant({"name": "mediapipe", "path": "mediapipe", "total_bytes": 1})
    builder.add_latency({"variant": "mediapipe", "threads": 1, "mode": "image", "end_to_end": timing(reference)})
    for index, (variant_path, median) in enumerate(medians.items()):
        name = f"v{index}"
        times = [median - 1, median, median + 1]
        builder.add_variant({"name": name, "path": variant_path, "total_bytes": 1})
        builder.add_latency({"variant": name, "threads": 1, "mode": "image", "end_to_end": timing(times),
                             "ratio_to_mediapipe": Ratio.of(median_ratio(times, reference, paired=True))})
    builder.complete()


def test_the_listing_gives_each_model_its_newest_benchmark_from_the_workspace_reports(workspace):
    write_bench_report(workspace / "reports" / "old" / "report.json", "2026-11-01T00:00:00Z",
                       {"shipped": 120.0, "variants/copy": 90.0})
    write_bench_report(workspace / "reports" / "new" / "report.json", "2026-11-20T00:00:00Z",
                       {str(workspace / "variants" / "copy"): 80.0})
    (workspace / "reports" / "broken").mkdir()
    (workspace / "reports" / "broken" / "report.json").write_text("{not json")  # skipped, not a 500
    with TestClient(create_app(ServeSettings(workspace=workspace))) as client:
        response = client.get("/api/v1/models")
    assert response.status_code == 200, response.text
    models = {model["name"] if model["error"] is None else model["path"]: model for model in response.json()["models"]}
    assert models["shipped"]["last_benchmark"]["image_median_ms"] == 120.0
    assert models["shipped"]["last_benchmark"]["report"] == "reports/old/report.json"
    copy = models["copy"]["last_benchmark"]
    assert copy["image_median_ms"] == 80.0 and copy["report"] == "reports/new/report.json"  # the newer one
    assert copy["ratio_to_mediapipe"] == pytest.approx(0.8, abs=0.02)
    assert models["variants/bad-checksum"]["last_benchmark"] is None
