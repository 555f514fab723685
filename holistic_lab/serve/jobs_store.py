"""`JobStore`: every job the server was given, in SQLite in the workspace (`jobs.sqlite3`), so a
restarted server finds them all. One connection behind a lock (the routes run on worker threads,
the runner on its own); WAL so a reader never waits for the runner's writes.

    store = JobStore(workspace / "jobs.sqlite3")
    job = store.create(new_job_id(), "finetune", {"module": "hands", ...}, out_dir=..., log_path=...)
    store.update(job["id"], status="running", pid=1234, started=now())
    store.recover()     # on server start: what a dead server left queued or running is failed, with the reason
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from ..files import display_path

KINDS = ("finetune", "prune")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: ids are the server's, never the client's
_COLUMNS = ("id", "kind", "config", "status", "created", "started", "finished", "pid", "exit_code", "error",
            "out_dir", "log_path")
_SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
    created TEXT NOT NULL, started TEXT, finished TEXT, pid INTEGER, exit_code INTEGER, error TEXT,
    out_dir TEXT, log_path TEXT NOT NULL, seq INTEGER)"""


def new_job_id() -> str:
    """A fresh job id (uuid4 hex): the job's folder is named by it before the job is stored."""
    return uuid.uuid4().hex


def now() -> str:
    """UTC, ISO 8601 to the second: what every time in the store is."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JobStore:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as error:  # a file of the same name that is not ours: left as it is
            self._db.close()
            raise ValueError(f"{display_path(self.path)}: not a holistic-lab job store ({error}); move it away or "
                             "serve another --workspace") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, kind: str, config: dict, out_dir, log_path) -> dict:
        """A new queued job (`job_id` from `new_job_id`); returns it."""
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"job_id: expected 32 hex digits (new_job_id), got {job_id!r}")
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, config, status, created, out_dir, log_path, seq) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))",
                (job_id, kind, json.dumps(config), now(), str(out_dir), str(log_path)))
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        """The job as a dict (config decoded), or None when there is no such job."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _as_job(row) if row else None

    def list(self, status: str | None = None) -> list[dict]:
        """Every job (or those with `status`), oldest first: the queue's order."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM jobs" + (" WHERE status = ?" if status else "") + " ORDER BY seq"
        with self._lock:
            rows = self._db.execute(query, (status,) if status else ()).fetchall()
        return [_as_job(row) for row in rows]

    def update(self, job_id: str, only_if: tuple[str, ...] | None = None, **fields) -> bool:
        """Set `fields` of one job; with `only_if`, only while its status is one of those (so a
        cancel and the job's own exit cannot overwrite each other). True when it changed."""
        unknown = set(fields) - set(_COLUMNS[3:])
        if unknown:
            raise ValueError(f"fields: cannot set {sorted(unknown)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {fields['status']!r}")
        query = f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in fields)} WHERE id = ?"
        values = [*fields.values(), job_id]
        if only_if:
            query += f" AND status IN ({', '.join('?' * len(only_if))})"
            values += list(only_if)
        with self._lock:
            return self._db.execute(query, values).rowcount == 1

    def recover(self) -> list[dict]:
        """On server start: every job a stopped server left queued or running is marked failed
        with the reason (queued ones are not restarted: a client that queued an hour of training
        should decide whether it still wants it). Returns those jobs as they were."""
        left = [job for job in self.list() if job["status"] in ("queued", "running")]
        restart = now()
        for job in left:
            reason = (f"the server stopped while the job was {job['status']} (restart at {restart}); "
                      "start it again to rerun it")
            self.update(job["id"], only_if=("queued", "running"), status="failed", finished=restart, error=reason)
        return left


def _as_job(row) -> dict:
    job = dict(zip(_COLUMNS, row))
    job["config"] = json.loads(job["config"])
    return job
