"""`JobRunner`: runs the store's jobs as child processes of the existing CLI (`holistic-lab
finetune --config job.json`, `holistic-lab prune`), `slots` at a time, oldest queued first.

A child is its own process group (so a cancel reaches the TensorFlow threads and anything it
forked), writes stdout and stderr to the job's log, and its exit decides the job's status; the
server's threads never wait on training. One scheduler thread polls the children and starts
queued jobs; `submit` and `cancel` wake it.

    runner = JobRunner(store, workspace, slots=1)
    runner.recover()                    # on start: fail what a dead server left, stop its orphans
    runner.submit(job)                  # starts now when a slot is free, else queues
    runner.cancel(job_id)               # SIGTERM to the group, SIGKILL after `grace_s`
    runner.close()                      # at shutdown: every running child stopped, its job failed
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import holistic_lab

from .jobs_store import JobStore, now

log = logging.getLogger("holistic_lab.serve")
POLL_S = 0.5
CANCELLED_BY_CLIENT = "cancelled by the client"


def job_command(job: dict) -> list[str]:
    """The CLI command line that runs `job` (paths in its config are already absolute)."""
    cli = [sys.executable, "-m", "holistic_lab.cli"]
    config = job["config"]
    if job["kind"] == "finetune":
        return [*cli, "finetune", "--config", str(Path(job["log_path"]).parent / "job.json"),
                "--out", job["out_dir"], "--no-progress"]
    command = [*cli, "prune", "--stage", config["stage"], "--sparsity", repr(float(config["sparsity"])),
               "--criterion", config["criterion"], "--out", job["out_dir"], "--no-progress"]
    if config.get("source"):
        command += ["--from", config["source"]]
    return command


JOB_ID_ENV = "HOLISTIC_LAB_JOB_ID"  # marks a job's child, so a restarted server can tell it from a reused pid


def _child_environment(job_id: str) -> dict:
    """The server's environment, unbuffered (the log is followed live), marked with the job's id,
    with this copy of holistic_lab importable whatever folder the server was started from."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{JOB_ID_ENV: job_id})
    package_root = str(Path(holistic_lab.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(path, limit: int = 64 << 10) -> str:
    """The log's last non-empty line: the CLI's one-line error when a job fails."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, os.path.getsize(path) - limit))
            lines = [line.strip() for line in file.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


class JobRunner:
    def __init__(self, store: JobStore, workspace, slots: int = 1, grace_s: float = 10.0):
        self.store, self.workspace, self.slots, self.grace_s = store, Path(workspace), slots, grace_s
        self._children: dict[str, subprocess.Popen] = {}
        self._kill_at: dict[str, float] = {}      # job id -> when a cancelled child gets SIGKILL
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._schedule, name="holistic-lab-jobs", daemon=True)
        self._thread.start()

    def recover(self) -> list[dict]:
        """Fail every job a stopped server left queued or running (`JobStore.recover`) and stop a
        child it left behind, recognised by the job's id in its environment (a pid alone may
        have been reused by now)."""
        left = self.store.recover()
        for job in left:
            if job["pid"] and _job_id_of(job["pid"]) == job["id"]:
                _signal_group(job["pid"], signal.SIGKILL)
                log.warning("stopped job %s's orphaned process %d", job["id"], job["pid"])
        return left

    def submit(self, job: dict) -> dict:
        """Queue `job` (already in the store as queued); started now when a slot is free."""
        self._start_queued()
        self._wake.set()
        return self.store.get(job["id"])

    def cancel(self, job_id: str) -> dict:
        """A queued job is cancelled at once; a running one gets SIGTERM (SIGKILL after
        `grace_s`) and is marked cancelled when it exits. A finished job is left as it is."""
        with self._lock:
            finished = now()
            if self.store.update(job_id, only_if=("queued",), status="cancelled", finished=finished,
                                 error=CANCELLED_BY_CLIENT):
                return self.store.get(job_id)
            child = self._children.get(job_id)
            if child is not None and job_id not in self._kill_at:
                self._kill_at[job_id] = time.monotonic() + self.grace_s
                _signal_group(child.pid, signal.SIGTERM)
        self._wake.set()
        return self.store.get(job_id)

    def close(self) -> None:
        """Stop the scheduler, then every running child (SIGTERM, SIGKILL after `grace_s`); their
        jobs and the queued ones are marked failed with the reason. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            children = dict(self._children)
        self._wake.set()
        self._thread.join(timeout=5)
        for child in children.values():
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        stopped = now()
        for job_id, child in children.items():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                child.wait()
            cancelled = job_id in self._kill_at
            self.store.update(job_id, only_if=("running",), status="cancelled" if cancelled else "failed",
                              finished=stopped, exit_code=child.returncode,
                              error=CANCELLED_BY_CLIENT if cancelled else
                              f"the server shut down while the job was running ({stopped}); start it again to rerun it")
        for job in self.store.list("queued"):
            self.store.update(job["id"], only_if=("queued",), status="failed", finished=stopped,
                              error=f"the server shut down before the job started ({stopped})")

    def running(self) -> list[str]:
        with self._lock:
            return list(self._children)

    def _schedule(self) -> None:
        while True:
            self._wake.wait(POLL_S)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
            try:
                self._reap()
                self._start_queued()
            except Exception:  # the scheduler must outlive one bad job (a full disk, a vanished log folder)
                log.exception("job scheduler")

    def _reap(self) -> None:
        with self._lock:
            for job_id, child in list(self._children.items()):
                code = child.poll()
                if code is None:
                    if time.monotonic() > self._kill_at.get(job_id, float("inf")):
                        _signal_group(child.pid, signal.SIGKILL)
                    continue
                del self._children[job_id]
                self._finish(job_id, code, cancelled=self._kill_at.pop(job_id, None) is not None)

    def _finish(self, job_id: str, code: int, cancelled: bool) -> None:
        job = self.store.get(job_id)
        if cancelled:
            status, error = "cancelled", CANCELLED_BY_CLIENT
        elif code == 0:
            status, error = "succeeded", None
        else:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            status, error = "failed", f"{how}: {_last_line(job['log_path']) or 'no output'}"
        self.store.update(job_id, only_if=("running",), status=status, finished=now(), exit_code=code, error=error)

    def _start_queued(self) -> None:
        with self._lock:
            if self._closed:
                return
            for job in self.store.list("queued")[:max(0, self.slots - len(self._children))]:
                self._start(job)

    def _start(self, job: dict) -> None:
        log_path = Path(job["log_path"])
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log_file:
                child = subprocess.Popen(job_command(job), stdout=log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workspace, env=_child_environment(job["id"]),
                                         start_new_session=True)
        except OSError as error:
            self.store.update(job["id"], only_if=("queued",), status="failed", finished=now(),
                              error=f"could not start the job: {error}")
            return
        if self.store.update(job["id"], only_if=("queued",), status="running", started=now(), pid=child.pid):
            self._children[job["id"]] = child
        else:  # cancelled between the listing and the start
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()


def _job_id_of(pid: int) -> str | None:
    """The job id a running process was started with (JOB_ID_ENV), None for another process."""
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = f"{JOB_ID_ENV}=".encode()
    return next((entry[len(prefix):].decode("ascii", "replace") for entry in entries if entry.startswith(prefix)), None)
