"""The fine-tuning job API: every refusal is a 4xx JSON naming the field; a real fine-tuning job
run through the API succeeds with readable metrics; cancel and shutdown stop the child's process
group; a server killed mid-job and restarted reports that job failed with the reason."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from holistic_lab import __version__
from holistic_lab.net import free_port
from holistic_lab.serve import ServeSettings, create_app
from holistic_lab.serve.jobs_store import JobStore, new_job_id
from holistic_lab.serve.server_process import ServerProcess

JOB = {"module": "face_mesh", "epochs": 1, "batch_size": 2, "validation_split": 0.5}
LONG_JOB = {**JOB, "epochs": 1000}  # still running when the test stops it
FINISHED = ("succeeded", "failed", "cancelled")


def wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_group(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stored_pids(workspace: Path) -> list[int]:
    store = JobStore(workspace / "jobs.sqlite3")
    try:
        return [job["pid"] for job in store.list() if job["pid"]]
    finally:
        store.close()


@pytest.fixture
def workspace(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    yield folder
    for pid in stored_pids(folder) if (folder / "jobs.sqlite3").exists() else []:
        kill_group(pid)  # no training left behind by a failing test


@pytest.fixture
def client(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace, job_grace_s=3.0))) as client:
        yield client


@pytest.fixture
def face_set(sample_face_set, workspace) -> str:
    """The tiny real TFRecord set (two portraits with teacher labels), copied into the workspace."""
    (workspace / "sets").mkdir()
    shutil.copy(sample_face_set, workspace / "sets" / "faces.tfrecord")
    return "sets/faces.tfrecord"


def start(client, **fields):
    return client.post("/api/v1/finetune/start", json=fields)


def refused(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"}, body
    for word in words:
        assert word in body["error"], body
    return body


def job_status(client, job_id: str) -> dict:
    response = client.get("/api/v1/finetune/status", params={"job_id": job_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_status_without_a_job_says_ready_with_the_version(client):
    body = client.get("/api/v1/finetune/status").json()
    assert body["status"] == "ready" and body["version"] == __version__
    assert client.get("/api/v1/jobs").json() == {"jobs": []}


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_start_refuses_a_body_that_is_not_a_json_object(client, body):
    response = client.post("/api/v1/finetune/start", content=body, headers={"content-type": "application/json"})
    refused(response, 400, "body")


@pytest.mark.parametrize(("fields", "named"), [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": -1}, "batch_size"),
    ({"validation_split": 1.5}, "validation_split"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"lora_rank": 100_000}, "lora_rank"),
    ({"module": "ears"}, "module"),
    ({"epoch": 3}, "epoch"),                       # unknown field, named
    ({"task_type": "classification"}, "num_classes"),
])
def test_start_refuses_a_bad_field_by_name(client, face_set, fields, named):
    refused(start(client, dataset_path=face_set, **{**JOB, **fields}), 400, named)
    assert client.get("/api/v1/jobs").json() == {"jobs": []}


def test_start_refuses_a_missing_dataset_path(client):
    refused(start(client, **JOB), 400, "dataset_path")


@pytest.mark.parametrize("where", ["sets/none.tfrecord", "sets", "fifo", "empty.tfrecord"])
def test_start_refuses_a_data_set_that_is_not_there_before_any_job_exists(client, workspace, where):
    (workspace / "sets").mkdir(exist_ok=True)
    os.mkfifo(workspace / "fifo")  # a reader of it would block for ever
    (workspace / "empty.tfrecord").write_bytes(b"")
    response = start(client, dataset_path=where, **JOB)
    if where == "empty.tfrecord":  # a file is a set; what is in it is the job's to read (and to fail on)
        assert response.status_code == 202, response.text
        return
    refused(response, 400, "dataset_path")
    assert client.get("/api/v1/jobs").json() == {"jobs": []}


@pytest.mark.parametrize(("fields", "named"), [
    ({"distributed_workers": 99}, "distributed_workers"),   # more local workers than the bound
    ({"task_type": "classification", "num_classes": 2, "module": "hands", "distributed_workers": 2},
     "distributed_workers"),   # a gesture head trains in one process
    ({"task_type": "classification", "num_classes": 2, "module": "face_mesh"}, "module"),
    ({"task_type": "classification", "num_classes": 2, "module": "hands", "lora_rank": 4}, "lora_rank"),
    ({"distributed_workers": 2, "shard_by": "file"}, "shard_by 'file'"),   # a one-file set for 2 workers
])
def test_start_refuses_what_the_trainer_would_refuse_before_any_job_exists(client, face_set, fields, named):
    refused(start(client, dataset_path=face_set, **{**JOB, **fields}), 400, named)
    assert client.get("/api/v1/jobs").json() == {"jobs": []}


def test_a_job_on_two_local_workers_is_runnable_and_its_command_carries_them(workspace, face_set):
    from holistic_lab.cli import build_parser, finetune_config
    from holistic_lab.serve.jobs_api import check_runnable
    from holistic_lab.serve.jobs_runner import job_command
    from holistic_lab.train import FineTuneConfig

    config = FineTuneConfig(**{**JOB, "dataset_path": str(workspace / face_set), "distributed_workers": 2})
    check_runnable(config, face_set)   # not refused
    folder = workspace / "jobs" / "x"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(config.to_json() + "\n")   # as the API writes it
    job = {"kind": "finetune", "config": json.loads(config.to_json()), "log_path": str(folder / "log.txt"),
           "out_dir": str(workspace / "variants" / "x")}
    command = job_command(job)
    assert command[1:3] == ["-m", "holistic_lab.cli"]
    args = build_parser().parse_args(command[3:])   # the worker count travels in job.json, which --config reads
    assert finetune_config(args).distributed_workers == 2


def test_another_sites_page_cannot_start_jobs_or_switch_models(client, face_set):
    foreign = {"origin": "http://evil.example"}
    refused(client.post("/api/v1/finetune/start", json={"dataset_path": face_set, **JOB}, headers=foreign),
            403, "another site")
    refused(client.post("/api/v1/models/activate", json={"variant": "shipped"}, headers=foreign), 403, "another site")
    assert client.get("/api/v1/jobs").json() == {"jobs": []}
    own = {"origin": str(client.base_url)}  # the server's own page may
    assert client.get("/api/v1/jobs", headers=own).status_code == 200


def test_start_refuses_paths_outside_the_workspace(client, face_set, workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(workspace / face_set, outside / "faces.tfrecord")
    (workspace / "escape").symlink_to(outside, target_is_directory=True)
    for field, value in [("dataset_path", "../outside/faces.tfrecord"), ("dataset_path", str(outside / "faces.tfrecord")),
                         ("dataset_path", "escape/faces.tfrecord"), ("dataset_path", "sets/../../outside/faces.tfrecord"),
                         ("checkpoint_dir", "../outside/checkpoints"), ("checkpoint_dir", "/tmp/checkpoints"),
                         ("checkpoint_dir", "escape/checkpoints")]:
        refused(start(client, **{**JOB, "dataset_path": face_set, field: value}), 400, field, "outside")
    for folder in (".", "jobs/x", "variants/mine"):  # the server's own folders
        refused(start(client, **JOB, dataset_path=face_set, checkpoint_dir=folder), 400, "checkpoint_dir")
    assert not list(outside.glob("checkpoints*")) and client.get("/api/v1/jobs").json() == {"jobs": []}


def test_unknown_and_malformed_job_ids(client):
    unknown = new_job_id()
    for path in ("status", "logs", "metrics"):
        refused(client.get(f"/api/v1/finetune/{path}", params={"job_id": unknown}), 404, unknown)
        refused(client.get(f"/api/v1/finetune/{path}", params={"job_id": "../../etc/passwd"}), 400, "job_id")
    refused(client.post("/api/v1/finetune/cancel", json={"job_id": unknown}), 404, unknown)
    refused(client.post("/api/v1/finetune/cancel", json={"job_id": "x' OR 1=1 --"}), 400, "job_id")
    refused(client.post("/api/v1/finetune/cancel", json={"job": unknown}), 400, "job_id")
    refused(client.post("/api/v1/finetune/cancel", content=b"{", headers={"content-type": "application/json"}), 400)
    refused(client.get("/api/v1/finetune/logs", params={"job_id": unknown, "tail": 0}), 422, "tail")


@pytest.mark.parametrize(("fields", "named"), [
    ({"sparsity": 1.0}, "sparsity"),
    ({"sparsity": 0}, "sparsity"),
    ({"sparsity": -0.1}, "sparsity"),
    ({"sparsity": "0.3"}, "sparsity"),
    ({"stage": "ears"}, "stage"),
    ({"method": "taylor"}, "method"),
    ({"variant": "../escape"}, "variant"),
    ({"variant": "a/b"}, "variant"),
    ({"from_variant": "../../x"}, "from_variant"),
    ({"from_variant": "missing"}, "from_variant"),
    ({"speed": "fast"}, "speed"),
])
def test_prune_refuses_bad_requests_by_name(client, fields, named):
    body = {"variant": "pruned", "stage": "face_landmark", "method": "l1_norm", "sparsity": 0.3, **fields}
    refused(client.post("/api/v1/model/prune", json=body), 400, named)
    assert client.get("/api/v1/jobs").json() == {"jobs": []}


def test_prune_refuses_a_bad_json_body_and_an_existing_variant(client, workspace):
    refused(client.post("/api/v1/model/prune", content=b"{'variant':", headers={"content-type": "application/json"}),
            400)
    (workspace / "variants" / "taken").mkdir(parents=True)
    refused(client.post("/api/v1/model/prune", json={"variant": "taken", "stage": "face_landmark", "sparsity": 0.3}),
            409, "taken")


def test_a_token_guards_every_job_endpoint(workspace):
    with TestClient(create_app(ServeSettings(workspace=workspace, token="s3cret"))) as client:
        for method, path in [("get", "/api/v1/finetune/status"), ("get", "/api/v1/jobs"),
                             ("post", "/api/v1/finetune/start"), ("post", "/api/v1/model/prune"),
                             ("post", "/api/v1/finetune/cancel")]:
            refused(getattr(client, method)(path), 401, "token")
            refused(getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}), 401)
        assert client.get("/api/v1/finetune/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_real_fine_tuning_job_then_a_queued_prune_job_through_the_api(client, face_set, workspace):
    started = start(client, dataset_path=face_set, **JOB)
    assert started.status_code == 202, started.text
    job_id, log_url = started.json()["job_id"], started.json()["log_url"]
    assert started.json()["status"] in ("queued", "running")
    pruning = client.post("/api/v1/model/prune", json={"variant": "face_l1", "stage": "face_landmark",
                                                        "method": "l1_norm", "sparsity": 0.3})
    assert pruning.status_code == 202 and pruning.json()["status"] == "queued"  # behind the fine-tuning job
    assert job_status(client, job_id)["status"] == "running"  # the server answers while the child trains
    followed = client.get(f"{log_url}&follow=true&timeout_s=240")  # ends when the job ends
    job = job_status(client, job_id)
    assert job["status"] == "succeeded", (job, followed.text[-2000:])
    assert "best epoch 1 of 1" in followed.text
    assert job["exit_code"] == 0 and job["error"] is None and job["started"] <= job["finished"]
    assert job["config"]["checkpoint_dir"] == str(workspace / "jobs" / job_id / "checkpoints")
    assert (Path(job["out_dir"]) / "manifest.json").is_file() and Path(job["out_dir"]).parent == workspace / "variants"
    assert "best epoch 1 of 1" in client.get(f"{log_url}&tail=5").text
    metrics = client.get("/api/v1/finetune/metrics", params={"job_id": job_id}).json()
    assert metrics["epoch"] == 1 and metrics["history"]["epoch"] == [1]
    assert metrics["loss"] > 0 and metrics["val_loss"] > 0 and metrics["history"]["val_loss"] == [metrics["val_loss"]]
    assert {"landmarks", "val_landmarks", "z"} <= set(metrics["losses"])
    assert list((workspace / "jobs" / job_id / "checkpoints" / "tensorboard").iterdir())
    refused(client.post("/api/v1/finetune/cancel", json={"job_id": job_id}), 409, "succeeded")

    prune_id = pruning.json()["job_id"]
    pruned = wait_for(lambda: (found := job_status(client, prune_id))["status"] in FINISHED and found, 180, "pruning")
    assert pruned["status"] == "succeeded", (pruned, client.get(pruned["log_url"]).text[-2000:])
    assert pruned["started"] >= job["finished"] and pruned["config"]["criterion"] == "l1"
    variant = workspace / "variants" / "face_l1"
    assert pruned["out_dir"] == str(variant) and (variant / "face_landmark.tflite").is_file()
    refused(client.get("/api/v1/finetune/metrics", params={"job_id": prune_id}), 400, "prune job")
    assert [listed["job_id"] for listed in client.get("/api/v1/jobs").json()["jobs"]] == [job_id, prune_id]


def test_cancel_a_queued_and_a_running_job_and_shutdown_fails_the_running_one(workspace, face_set):
    app = create_app(ServeSettings(workspace=workspace, job_grace_s=3.0))
    with TestClient(app) as client:
        first = start(client, dataset_path=face_set, **LONG_JOB, checkpoint_dir="runs/first").json()["job_id"]
        second = start(client, dataset_path=face_set, **LONG_JOB, checkpoint_dir="runs/second").json()["job_id"]
        refused(start(client, dataset_path=face_set, **LONG_JOB, checkpoint_dir="runs/second"), 409, "checkpoint_dir")
        assert job_status(client, first)["status"] == "running"
        assert job_status(client, second)["status"] == "queued"  # one slot by default
        cancelled = client.post("/api/v1/finetune/cancel", json={"job_id": second}).json()
        assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled by the client"
        (pid,) = stored_pids(workspace)
        client.post("/api/v1/finetune/cancel", json={"job_id": first})
        job = wait_for(lambda: (found := job_status(client, first))["status"] in FINISHED and found, 30, "the cancel")
        assert job["status"] == "cancelled" and wait_for(lambda: not alive(pid), 10, "the child to exit")
        third = start(client, dataset_path=face_set, **LONG_JOB, checkpoint_dir="runs/second").json()["job_id"]
        wait_for(lambda: job_status(client, third)["status"] == "running", 10, "the third job to start")
        pid = next(pid for pid in stored_pids(workspace) if alive(pid))
    # the app's shutdown stopped the running child and said why
    store = JobStore(workspace / "jobs.sqlite3")
    job = store.get(third)
    store.close()
    assert job["status"] == "failed" and "shut down while the job was running" in job["error"]
    assert wait_for(lambda: not alive(pid), 15, "the shut-down job's process to exit")


def test_cancelling_a_job_on_two_local_workers_leaves_no_worker_behind(workspace, face_set):
    from holistic_lab.serve.jobs_runner import _job_id_of

    def job_processes(job_id: str) -> list[int]:   # the launcher and its workers carry the job's id
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and alive(int(p.name))
                and _job_id_of(int(p.name)) == job_id]

    with TestClient(create_app(ServeSettings(workspace=workspace, job_grace_s=3.0))) as client:
        job_id = start(client, dataset_path=face_set, **LONG_JOB, distributed_workers=2).json()["job_id"]
        wait_for(lambda: len(job_processes(job_id)) == 3, 60, "the launcher and its 2 workers")
        client.post("/api/v1/finetune/cancel", json={"job_id": job_id})
        job = wait_for(lambda: (found := job_status(client, job_id))["status"] in FINISHED and found, 30, "the cancel")
        assert job["status"] == "cancelled"
        assert wait_for(lambda: not job_processes(job_id), 15, "every worker to exit")


def test_a_server_killed_mid_job_reports_it_failed_after_restart_and_a_clean_stop_fails_the_running_job(workspace, face_set):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    servers, job_pid = [ServerProcess(workspace, port=port), ServerProcess(workspace, port=port)], None
    try:
        servers[0].start()
        job_id = httpx.post(f"{url}/api/v1/finetune/start", json={"dataset_path": face_set, **LONG_JOB}).json()["job_id"]
        wait_for(lambda: httpx.get(f"{url}/api/v1/finetune/status", params={"job_id": job_id}).json()["status"]
                 == "running", 20, "the job to run")
        (job_pid,) = stored_pids(workspace)
        servers[0].kill()  # SIGKILL, no shutdown: the store still says running
        assert alive(job_pid)  # the orphaned training the restart must deal with
        servers[1].start()
        job = httpx.get(f"{url}/api/v1/finetune/status", params={"job_id": job_id}).json()
        assert job["status"] == "failed", job
        assert "the server stopped while the job was running (restart at " in job["error"]
        assert [listed["job_id"] for listed in httpx.get(f"{url}/api/v1/jobs").json()["jobs"]] == [job_id]
        assert wait_for(lambda: not alive(job_pid), 10, "the orphaned job to be stopped")

        # a clean stop (SIGTERM to the server alone: uvicorn's shutdown) stops the running child and says why
        second = httpx.post(f"{url}/api/v1/finetune/start", json={"dataset_path": face_set, **LONG_JOB}).json()["job_id"]
        wait_for(lambda: httpx.get(f"{url}/api/v1/finetune/status", params={"job_id": second}).json()["status"]
                 == "running", 20, "the second job to run")
        job_pid = next(pid for pid in stored_pids(workspace) if alive(pid))
        servers[1].process.terminate()
        servers[1].process.wait(30)
        store = JobStore(workspace / "jobs.sqlite3")
        job = store.get(second)
        store.close()
        assert job["status"] == "failed" and "the server shut down while the job was running" in job["error"]
        assert not alive(job_pid)
    finally:
        for server in servers:
            server.stop()
        kill_group(job_pid)


def test_tensorboard_starts_on_the_jobs_folder_and_answers(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from holistic_lab.serve.tensorboard import start_tensorboard

    with pytest.raises(ValueError, match="logdir"):
        start_tensorboard(tmp_path / "missing")
    port = free_port()
    board = start_tensorboard(tmp_path, port=port)
    try:
        assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out

        def answers():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/data/runs", timeout=2).status_code == 200
            except httpx.HTTPError:
                if board.poll() is not None:
                    pytest.skip(f"tensorboard exited with {board.returncode} before answering (offline?)")
                return False

        wait_for(answers, 60, "TensorBoard to answer")
    finally:
        board.terminate()
        try:
            board.wait(10)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()


def test_recover_fails_queued_and_running_jobs_and_spares_a_reused_pid(workspace):
    from holistic_lab.serve.jobs_runner import JobRunner

    store = JobStore(workspace / "jobs.sqlite3")
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # holds the pid a dead job recorded
    try:
        queued = store.create(new_job_id(), "finetune", {}, out_dir="v1", log_path=workspace / "a.log")["id"]
        running = store.create(new_job_id(), "finetune", {}, out_dir="v2", log_path=workspace / "b.log")["id"]
        done = store.create(new_job_id(), "prune", {}, out_dir="v3", log_path=workspace / "c.log")["id"]
        store.update(running, status="running", pid=stranger.pid)
        store.update(done, status="succeeded")
        runner = JobRunner(store, workspace)
        assert {job["id"] for job in runner.recover()} == {queued, running}
        runner.close()
        for job_id, was in ((queued, "queued"), (running, "running")):
            job = store.get(job_id)
            assert job["status"] == "failed" and f"the server stopped while the job was {was} (restart at " in job["error"]
        assert store.get(done)["status"] == "succeeded" and store.recover() == []
        assert stranger.poll() is None  # not the job's process: its environment lacks the job id
    finally:
        stranger.kill()
        stranger.wait()
        store.close()


def test_recover_stops_an_orphaned_prune_child_marked_with_its_job_id(workspace):
    from holistic_lab.serve.jobs_runner import JOB_ID_ENV, JobRunner

    store = JobStore(workspace / "jobs.sqlite3")
    job_id = store.create(new_job_id(), "prune", {}, out_dir="variants/x", log_path=workspace / "p.log")["id"]
    # a prune's command line names its variant, not its job: the id travels in the environment
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True, env={**os.environ, JOB_ID_ENV: job_id})
    try:
        store.update(job_id, status="running", pid=orphan.pid)
        runner = JobRunner(store, workspace)
        assert [job["id"] for job in runner.recover()] == [job_id]
        runner.close()
        assert orphan.wait(10) == -signal.SIGKILL
        assert store.get(job_id)["status"] == "failed"
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        store.close()


def test_a_second_server_on_the_same_workspace_is_refused_while_the_first_runs(workspace, tmp_path):
    with TestClient(create_app(ServeSettings(workspace=workspace))) as first:
        with pytest.raises(ValueError, match="another holistic-lab serve is using it"):
            create_app(ServeSettings(workspace=workspace))
        with TestClient(create_app(ServeSettings(workspace=tmp_path / "other"))) as other:  # another workspace
            assert other.get("/api/v1/finetune/status").json()["status"] == "ready"
        assert first.get("/api/v1/finetune/status").json()["status"] == "ready"
    with TestClient(create_app(ServeSettings(workspace=workspace))) as again:  # the first stopped: its lock went
        assert again.get("/api/v1/finetune/status").json()["status"] == "ready"
