"""A bounded load on a running server's `POST /predict`.

    with ServerProcess(tmp_path, "--cache", "0") as server:      # serve.server_process
        result = run_load(server.url + "predict", image_bytes, clients=8, requests_per_client=50,
                          pid=server.process.pid)

`run_load` runs `clients` threads, each sending `requests_per_client` uploads one after another,
and returns the throughput, latency percentiles, errors by status and, given the server's pid,
its resident memory before and after (Linux). `image_bytes` is one upload or a list of them
(request k of client c sends item (c * requests_per_client + k) mod len): distinct images keep
the result cache from answering. Nothing here is unbounded: every request has a timeout and the
total is clients x requests_per_client.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
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


def run_load(url: str, image_bytes: bytes | list[bytes], clients: int = 8, requests_per_client: int = 50,
             timeout_s: float = 60.0, pid: int | None = None, token: str | None = None,
             file_name: str = "image.jpg") -> dict:
    """POST `image_bytes` to `url` (the server's /predict) from `clients` threads, each
    `requests_per_client` times in turn. Returns {requests, clients, seconds, throughput_rps,
    latency_ms: {p50, p90, p99, max} of the successful requests, ok, errors: {status or exception
    name: count}, cache: {hit, miss}, rss_mib_before, rss_mib_after}."""
    for name, value in (("clients", clients), ("requests_per_client", requests_per_client)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"run_load: {name} must be an integer >= 1, got {value!r}")
    uploads = [image_bytes] if isinstance(image_bytes, bytes) else list(image_bytes)
    if not uploads or not all(isinstance(item, bytes) for item in uploads):
        raise ValueError("run_load: image_bytes must be bytes or a non-empty list of bytes")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies, errors, cache = [], Counter(), Counter()
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=timeout_s, headers=headers) as http:
            for k in range(requests_per_client):
                upload = uploads[(index * requests_per_client + k) % len(uploads)]
                start = time.perf_counter()
                try:
                    response = http.post(url, files={"image": (file_name, upload)})
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
    threads = [threading.Thread(target=client, args=(i,), name=f"load-client-{i}") for i in range(clients)]
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
