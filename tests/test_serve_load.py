"""A real uvicorn server on a free loopback port (a child process, always stopped) under a small
bounded load, and `holistic-lab serve` refusing what it must refuse before it binds."""
from __future__ import annotations

import httpx

from holistic_lab.cli import main
from holistic_lab.datasets import sample_path
from holistic_lab.serve.loadtest import run_load
from holistic_lab.serve.server_process import ServerProcess


def test_a_real_server_answers_a_small_load_without_errors(tmp_path):
    image = sample_path("grace_hopper").read_bytes()
    with ServerProcess(tmp_path / "workspace", "--pool", "1", "--cache", "0") as server:
        result = run_load(server.url + "predict", image, clients=2, requests_per_client=3, timeout_s=60,
                          pid=server.process.pid)
        models = httpx.get(server.url + "api/v1/models", timeout=10)
    assert result["errors"] == {} and result["ok"] == 6, server.log_tail()
    assert result["cache"] == {"miss": 6}  # cache off: every request ran the cascade
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["throughput_rps"] > 0 and result["rss_mib_before"] > 0 and result["rss_mib_after"] > 0
    assert models.status_code == 200 and models.json()["active"] == "shipped"
    assert server.process.poll() is not None


def test_serve_refuses_a_public_address_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("HOLISTIC_LAB_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "8999"]) == 2
    assert "needs an API token" in capsys.readouterr().err


def test_serve_refuses_a_broken_variant_before_binding(tmp_path, capsys):
    assert main(["serve", "--variant", str(tmp_path / "nothing"), "--workspace", str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


def test_serve_refuses_a_workspace_that_is_a_file_or_holds_another_jobs_sqlite3(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main(["serve", "--workspace", str(tmp_path / "file"), "--port", "8998"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "jobs.sqlite3").write_text("someone's notes")
    assert main(["serve", "--workspace", str(workspace), "--port", "8998"]) == 2
    assert "not a holistic-lab job store" in capsys.readouterr().err
    assert (workspace / "jobs.sqlite3").read_text() == "someone's notes" and (tmp_path / "file").read_text() == "mine"
