"""`holistic-lab serve` in a child process, for notebooks, load tests and the tests that need a
real uvicorn server: a free loopback port, a bounded wait until it answers, and a stop that
always ends it (its clean shutdown stops its jobs; it is also stopped when this Python exits,
so a notebook that fails half-way leaves no server behind).

    with ServerProcess(workspace="work") as server:
        httpx.get(server.url + "api/v1/finetune/status")
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import httpx

from ..net import free_port
from .settings import TOKEN_ENV


class ServerProcess:
    def __init__(self, workspace, *args: str, port: int | None = None, token: str | None = None,
                 log_path=None, env: dict | None = None):
        self.workspace = Path(workspace)
        self.args, self.token = args, token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(log_path) if log_path else self.workspace / "server.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> "ServerProcess":
        """Start the server and wait until it answers; RuntimeError with its log's tail if it
        exits or stays silent for `timeout_s`."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "holistic_lab.cli", "serve", "--port", str(self.port),
                   "--workspace", str(self.workspace), *self.args]
        env = dict(self.env, **({TOKEN_ENV: self.token} if self.token else {}))  # not on the command line: ps shows it
        with open(self.log_path, "ab") as log:
            # its own session: stop() signals the server's whole group (job children have their own)
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        self._finalizer = weakref.finalize(self, _stop_at_exit, self.process)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "openapi.json", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server alone, as a crash would (its job children are left running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the server's process group (uvicorn shuts down cleanly and the server stops its
        jobs), then SIGKILL whatever is left after `grace_s`."""
        if self.process is None:
            return
        self._finalizer.detach()
        try:
            group = os.getpgid(self.process.pid)
        except ProcessLookupError:
            group = self.process.pid
        if self.process.poll() is None:
            os.killpg(group, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(group, signal.SIGKILL)  # job children that outlived the server
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait(10)

    def __enter__(self) -> "ServerProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_at_exit(process: subprocess.Popen) -> None:
    """At interpreter exit (or when the ServerProcess is collected): a server still running is
    sent SIGTERM, so it stops its jobs itself."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
