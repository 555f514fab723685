"""A bounded load on a running server's `POST /predict`, and a real server to put it on.

    server = start_server(tmp_path, port=free_port(), pool_size=1, cache_size=0)
    try:
        result = run_load(server.url + "predict", image_bytes, clients=8, requests_per_client=50,
                          pid=server.process.pid)
    finally:
        server.stop()

`run_load` runs `clients` threads, each sending `requests_per_client` uploads one after another,
and returns the throughput, latency percentiles, errors by status and, given the server's pid,
its resident memory before and after (Linux). Nothing here is unbounded: every request has a
timeout and the total is clients x requests_per_client.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np


def rss_mib(pid: int) -> float | None:
    """Resident memory of process `pid` in MiB from /proc (None where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_load(url: str, image_bytes: bytes, clients: int = 8, requests_per_client: int = 50,
             timeout_s: float = 60.0, pid: int | None = None, token: str | None = None,
             file_name: str = "image.jpg") -> dict:
    """POST `image_bytes` to `url` (the server's /predict) from `clients` threads, each
    `requests_per_client` times in turn. Returns {requests, clients, seconds, throughput_rps,
    latency_ms: {p50, p90, p99, max} of the successful requests, ok, errors: {status or exception
    name: count}, cache: {hit, miss}, rss_mib_before, rss_mib_after}."""
    for name, value in (("clients", clients), ("requests_per_client", requests_per_client)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"run_load: {name} must be an integer >= 1, got {value!r}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies, errors, cache = [], Counter(), Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=timeout_s, headers=headers) as http:
            for _ in range(requests_per_client):
                start = time.perf_counter()
                try:
                    response = http.post(url, files={"image": (file_name, image_bytes)})
                except httpx.HTTPError as error:
                    with lock:
                        errors[type(error).__name__] += 1
                    continue
                elapsed_ms = (time.perf_counter() - start) * 1000
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed_ms)
                        cache[response.headers.get("x-cache", "none")] += 1
                    else:
                        errors[str(response.status_code)] += 1

    rss_before = None if pid is None else rss_mib(pid)
    threads = [threading.Thread(target=client, name=f"load-client-{i}") for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    percentiles = dict(zip(("p50", "p90", "p99", "max"), np.percentile(latencies, [50, 90, 99, 100]).round(1).tolist())
                       ) if latencies else {}
    return {"requests": clients * requests_per_client, "clients": clients, "seconds": round(seconds, 2),
            "throughput_rps": round(len(latencies) / seconds, 2), "latency_ms": percentiles, "ok": len(latencies),
            "errors": dict(errors), "cache": dict(cache), "rss_mib_before": rss_before,
            "rss_mib_after": None if pid is None else rss_mib(pid)}


def free_port() -> int:
    """A loopback port free a moment ago (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_SERVER_CODE = """
import json, sys, uvicorn
from holistic_lab.serve import ServeSettings, create_app
options = json.loads(sys.argv[1])
uvicorn.run(create_app(ServeSettings(**options)), host=options["host"], port=options["port"], log_level="warning")
"""


@dataclass
class Server:
    """A uvicorn server in a child process; `stop()` ends it (and is safe to call twice)."""
    process: subprocess.Popen
    url: str

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)


def start_server(workspace, port: int | None = None, ready_timeout_s: float = 120.0, log=None, **settings) -> Server:
    """Start `create_app(ServeSettings(workspace=..., host=127.0.0.1, port=..., **settings))` under
    uvicorn in a child Python and wait until it answers; the child is killed if it does not."""
    port = free_port() if port is None else port
    options = {"workspace": str(workspace), "host": "127.0.0.1", "port": port, **settings}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                    os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, json.dumps(options)], env=env,
                               stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
    server = Server(process, f"http://127.0.0.1:{port}/")
    deadline = time.monotonic() + ready_timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode} before answering")
            try:
                if httpx.get(server.url + "openapi.json", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer on {server.url} within {ready_timeout_s:g} s")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
