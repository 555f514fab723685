"""DESIGN.md's fine-tuning job API: start a `FineTuneConfig` job, read its status, log and
metrics, cancel it; prune a stage into a new variant. Jobs run in child processes
(`jobs_runner`), their state lives in SQLite in the workspace (`jobs_store`), so a restarted
server still answers for every job. Every endpoint needs the API token when one is set.

    POST /api/v1/finetune/start    FineTuneConfig JSON -> {"job_id", "status", "log_url"}
    GET  /api/v1/finetune/status   {"status": "ready", "version"}; ?job_id=: that job
    GET  /api/v1/finetune/logs     ?job_id=&tail=N[&follow=true]
    GET  /api/v1/finetune/metrics  ?job_id= -> {"epoch", "loss", "val_loss", "losses", "history"}
    POST /api/v1/finetune/cancel   {"job_id"}
    POST /api/v1/model/prune       {"variant", "stage", "method", "sparsity"[, "from_variant"]}
    GET  /api/v1/jobs              every job, oldest first

Workspace layout: jobs.sqlite3; jobs/<id>/ (job.json, log.txt, checkpoints/ unless the job names
its own checkpoint_dir: then jobs/<id>/tensorboard links to its TensorBoard logs); variants/
(finetune-<id>: what a fine-tuning job writes; <name>: what a prune job writes).
"""
from __future__ import annotations

import asyncio
import csv
import fcntl
import json
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..files import display_path
from ..train.config import MAX_JOB_BYTES, FineTuneConfig
from ..variants import STAGES
from .errors import ApiError
from .jobs_runner import JobRunner
from .jobs_store import FINISHED, JOB_ID, JobStore, new_job_id
from .security import inside_workspace, require_token

MAX_TAIL_LINES = 10_000
MAX_FOLLOW_S = 3600
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PRUNE_METHODS = {"l1_norm": "l1", "l2_norm": "l2"}  # the API's names -> `holistic-lab prune --criterion`


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    job_id: str


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    variant: str = Field(pattern=NAME_PATTERN, description="the new variant's name: written to variants/<name>")
    stage: Literal[tuple(STAGES)]
    method: Literal[tuple(PRUNE_METHODS)] = "l1_norm"
    sparsity: float = Field(gt=0, lt=1, allow_inf_nan=False, description="fraction of each channel group removed")
    from_variant: str | None = Field(None, pattern=NAME_PATTERN,
                                     description="a variant in variants/ to start from; none: the shipped models")


def claim_workspace(workspace: Path):
    """An exclusive lock on the workspace for this server's life (released by the kernel when the
    process dies): a second server would `recover` the first one's running jobs, i.e. kill them.
    Returns the lock's file, to close at shutdown; ValueError when another server holds it."""
    lock = open(workspace / ".serve.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ValueError(f"workspace {display_path(workspace)}: another holistic-lab serve is using it (its jobs "
                         "would be taken for a dead server's); stop it or give this one another --workspace") from None
    return lock


def install(app: FastAPI) -> None:
    settings = app.state.settings
    (settings.workspace / "jobs").mkdir(parents=True, exist_ok=True)  # TensorBoard's logdir, even before a job
    lock = claim_workspace(settings.workspace)
    app.state.closers.append(lock.close)
    store = JobStore(settings.workspace / "jobs.sqlite3")
    runner = JobRunner(store, settings.workspace, slots=settings.job_slots,
                       grace_s=settings.job_grace_s)
    runner.recover()
    app.state.jobs = runner
    app.state.closers += [store.close, runner.close]  # closed newest first: the runner, then the store
    app.include_router(_router(settings.workspace, store, runner))


def _router(workspace: Path, store: JobStore, runner: JobRunner) -> APIRouter:
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], tags=["jobs"])

    def known_job(job_id: str) -> dict:
        if not JOB_ID.fullmatch(job_id):
            raise ApiError(400, "bad_job_id", f"job_id: expected the 32 hex digits the server gave, got {job_id[:80]!r}")
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, "unknown_job", f"job_id: no job {job_id}")
        return job

    @router.post("/finetune/start", status_code=202)
    async def start_finetune(request: Request) -> dict:
        fields = await _json_object(request)
        job = await run_in_threadpool(_submit_finetune, workspace, store, runner, fields)
        return {"job_id": job["id"], "status": job["status"], "log_url": _log_url(job["id"])}

    @router.get("/finetune/status")
    def status(job_id: str | None = None) -> dict:
        if job_id is None:
            return {"status": "ready", "version": __version__, "running": runner.running(),
                    "queued": [job["id"] for job in store.list("queued")]}
        return _public(known_job(job_id))

    @router.get("/finetune/logs")
    async def logs(job_id: str, tail: int = Query(200, ge=1, le=MAX_TAIL_LINES), follow: bool = False,
                   timeout_s: float = Query(600, gt=0, le=MAX_FOLLOW_S)):
        job = await run_in_threadpool(known_job, job_id)
        if not follow:
            text = await run_in_threadpool(_tail, job["log_path"], tail)
            return StreamingResponse(iter([text]), media_type="text/plain; charset=utf-8")
        return StreamingResponse(_follow(store, job, tail, timeout_s), media_type="text/plain; charset=utf-8")

    @router.get("/finetune/metrics")
    def metrics(job_id: str) -> dict:
        job = known_job(job_id)
        if job["kind"] != "finetune":
            raise ApiError(400, "not_finetune", f"job_id: job {job_id} is a {job['kind']} job; metrics are a "
                                                "fine-tuning job's")
        return {"job_id": job_id, "status": job["status"], **read_metrics(Path(job["config"]["checkpoint_dir"]))}

    @router.post("/finetune/cancel")
    def cancel(body: CancelRequest) -> dict:
        job = known_job(body.job_id)
        if job["status"] in FINISHED:
            raise ApiError(409, "job_finished", f"job_id: job {body.job_id} already {job['status']}")
        return _public(runner.cancel(body.job_id))

    @router.post("/model/prune", status_code=202)
    def prune(body: PruneRequest) -> dict:
        job = _submit_prune(workspace, store, runner, body)
        return {"job_id": job["id"], "status": job["status"], "log_url": _log_url(job["id"])}

    @router.get("/jobs")
    def jobs() -> dict:
        return {"jobs": [_public(job) for job in store.list()]}

    return router


async def _json_object(request: Request) -> dict:
    """The request body as a JSON object, at most MAX_JOB_BYTES; 400 otherwise."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JOB_BYTES:
            raise ApiError(413, "body_too_large", f"body: a job config is at most {MAX_JOB_BYTES} bytes")
    try:
        fields = json.loads(body)
    # ValueError: bad UTF-8 or JSON, or an integer of thousands of digits; RecursionError: [[[[...]]]]
    except (ValueError, RecursionError) as error:
        raise ApiError(400, "bad_json", f"body: expected a JSON object of FineTuneConfig fields ({error})") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "bad_json", f"body: expected a JSON object of FineTuneConfig fields, got "
                                        f"{type(fields).__name__}")
    return fields


def check_runnable(config: FineTuneConfig, given_dataset: str) -> None:
    """What the job's child would refuse in its first second, refused now with 400 naming the field
    (a 202 for a job that cannot start helps nobody): an unsupported combination of fields, a
    data set that is not there."""
    try:
        if config.task_type == "classification":
            from ..gestures.job import check_classification_job

            check_classification_job(config)
        else:
            from ..train.loop import check_supported

            check_supported(config)
    except ValueError as error:
        raise ApiError(400, "invalid_config", str(error)) from None
    if config.task_type == "classification":
        if not Path(config.dataset_path).is_dir():
            raise ApiError(400, "bad_dataset", f"dataset_path: {given_dataset!r} is not a folder of class folders "
                           "in the workspace")
        return
    from ..formats.tfrecord_sets import set_files
    from ..train.loop import shard_policy

    try:
        files = set_files(config.dataset_path)
    except (ValueError, OSError) as error:
        raise ApiError(400, "bad_dataset", f"dataset_path: {given_dataset!r}: {error}") from None
    try:
        shard_policy(config, len(files), config.distributed_workers)
    except ValueError as error:
        raise ApiError(400, "invalid_config", str(error).replace(config.dataset_path, given_dataset)) from None


def _submit_finetune(workspace: Path, store: JobStore, runner: JobRunner, fields: dict) -> dict:
    job_id = new_job_id()
    folder = workspace / "jobs" / job_id
    try:
        FineTuneConfig(**fields)  # every field checked (by name) before a path is looked at
    except ValueError as error:
        raise ApiError(400, "invalid_config", str(error)) from None
    fields = dict(fields)
    given_dataset = fields["dataset_path"]
    fields["dataset_path"] = str(inside_workspace(workspace, given_dataset, "dataset_path"))
    given_checkpoints = "checkpoint_dir" in fields
    checkpoints = (inside_workspace(workspace, fields["checkpoint_dir"], "checkpoint_dir") if given_checkpoints
                   else folder / "checkpoints")
    if given_checkpoints and (checkpoints == workspace or checkpoints.is_relative_to(workspace / "jobs")
                              or checkpoints.is_relative_to(workspace / "variants")):
        raise ApiError(400, "bad_path", f"checkpoint_dir: {fields['checkpoint_dir']!r} is the server's own folder "
                                        "(the workspace, jobs/ or variants/); name a folder of your own")
    busy = [job["id"] for job in store.list() if job["status"] in ("queued", "running")
            and job["kind"] == "finetune" and Path(job["config"]["checkpoint_dir"]) == checkpoints]
    if busy:
        raise ApiError(409, "checkpoint_dir_busy", f"checkpoint_dir: job {busy[0]} is using {checkpoints}")
    fields["checkpoint_dir"] = str(checkpoints)
    config = FineTuneConfig(**fields)
    check_runnable(config, given_dataset)
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(config.to_json() + "\n")
    if given_checkpoints:  # TensorBoard over jobs/ sees every job's scalars
        (folder / "tensorboard").symlink_to(checkpoints / "tensorboard", target_is_directory=True)
    job = store.create(job_id, "finetune", json.loads(config.to_json()),
                       out_dir=workspace / "variants" / f"finetune-{job_id}", log_path=folder / "log.txt")
    return runner.submit(job)


def _submit_prune(workspace: Path, store: JobStore, runner: JobRunner, body: PruneRequest) -> dict:
    out = inside_workspace(workspace, f"variants/{body.variant}", "variant")
    if out.exists():
        raise ApiError(409, "variant_exists", f"variant: variants/{body.variant} already exists; name a new variant")
    taken = [job["id"] for job in store.list() if job["status"] in ("queued", "running") and job["out_dir"] == str(out)]
    if taken:
        raise ApiError(409, "variant_busy", f"variant: job {taken[0]} is writing variants/{body.variant}")
    config = {"variant": body.variant, "stage": body.stage, "method": body.method, "sparsity": body.sparsity,
              "criterion": PRUNE_METHODS[body.method], "source": None}
    if body.from_variant is not None:
        source = inside_workspace(workspace, f"variants/{body.from_variant}", "from_variant")
        if not (source / "manifest.json").is_file():
            raise ApiError(400, "unknown_variant", f"from_variant: no variant variants/{body.from_variant}")
        config["source"] = str(source)
    job_id = new_job_id()
    folder = workspace / "jobs" / job_id
    folder.mkdir(parents=True)
    job = store.create(job_id, "prune", config, out_dir=out, log_path=folder / "log.txt")
    return runner.submit(job)


def _log_url(job_id: str) -> str:
    return f"/api/v1/finetune/logs?job_id={job_id}"


def _public(job: dict) -> dict:
    """A job as the API shows it: no pid (a server detail), its log and metrics URLs."""
    shown = {key: value for key, value in job.items() if key not in ("pid", "log_path")}
    shown["job_id"] = shown.pop("id")
    shown["log_url"] = _log_url(job["id"])
    if job["kind"] == "finetune":
        shown["metrics_url"] = f"/api/v1/finetune/metrics?job_id={job['id']}"
    return shown


def _tail(path, lines: int, limit: int = 4 << 20) -> str:
    """The last `lines` lines of the log (from at most its last `limit` bytes); '' before it exists."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - limit))
            text = file.read(limit).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    kept = deque(text.splitlines(keepends=True), maxlen=lines)
    return "".join(kept)


async def _follow(store: JobStore, job: dict, tail: int, timeout_s: float):
    """The log's tail, then what the job writes, until it finishes (and its last lines are sent)
    or `timeout_s` passes."""
    path = Path(job["log_path"])
    yield await run_in_threadpool(_tail, path, tail)
    offset = path.stat().st_size if path.exists() else 0
    deadline = time.monotonic() + timeout_s
    while True:
        finished = (await run_in_threadpool(store.get, job["id"]))["status"] in FINISHED
        chunk = await run_in_threadpool(_read_from, path, offset)
        if chunk:
            offset += len(chunk)
            yield chunk.decode("utf-8", "replace")
        if finished or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


def _read_from(path: Path, offset: int, limit: int = 1 << 20) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(limit)
    except FileNotFoundError:
        return b""


def read_metrics(checkpoint_dir: Path) -> dict:
    """What the training loop's `log.csv` says so far: the last epoch's `loss`, `val_loss`,
    `learning_rate` and `seconds`, its per-output losses in `losses` (landmarks, z, presence, ...,
    and their val_ twins), and each column's values per epoch in `history`. Before the first epoch ends: epoch 0 and nulls."""
    history: dict[str, list] = {}
    try:
        with open(checkpoint_dir / "log.csv", newline="") as file:
            for row in csv.DictReader(file):
                for name, value in row.items():
                    if name is not None:
                        history.setdefault(name, []).append(_number(value))
    except FileNotFoundError:
        pass
    epochs = history.pop("epoch", [])
    last = {name: values[-1] for name, values in history.items() if values}
    totals = ("loss", "val_loss", "learning_rate", "seconds")
    return {"epoch": len(epochs), **{name: last.get(name) for name in totals},
            "losses": {name: value for name, value in last.items() if name not in totals},
            "history": {"epoch": [int(epoch) + 1 for epoch in epochs if epoch is not None], **history}}


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
