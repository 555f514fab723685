"""Throughput, latency and memory of `POST /predict` under a bounded load on loopback.

    python benchmarks/serve_load.py [--clients 8] [--requests 50] [--rounds 2] [--pool 1] [--threads 1] [--cache]

Starts a real uvicorn server (a child process on a free loopback port, stopped at the end) serving
the shipped models, warms it with one request, then `clients` threads each send `requests` uploads
of the sample portrait (grace_hopper.jpg) in turn; that `rounds` times, so the server's memory
after each round shows whether it keeps growing. The result cache is off unless --cache, so every
request runs the cascade. Prints one JSON object: the settings, and `run_load`'s result
(throughput, p50/p90/p99 latency of the successful requests, errors by status, server RSS before
and after the load).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--rounds", type=int, default=2, help="loads run one after another (memory stability)")
    parser.add_argument("--pool", type=int, default=1, help="pipelines serving at once")
    parser.add_argument("--threads", type=int, default=1, help="TFLite threads per stage")
    parser.add_argument("--cache", action="store_true", help="keep the result cache on (then all but the first hit it)")
    args = parser.parse_args()

    from holistic_lab.datasets import sample_path
    from holistic_lab.serve.loadtest import run_load
    from holistic_lab.serve.server_process import ServerProcess

    image = sample_path("grace_hopper").read_bytes()
    settings = {"pool": args.pool, "threads": args.threads, "cache": 64 if args.cache else 0,
                "queue": max(8, args.clients)}
    with tempfile.TemporaryDirectory() as workspace:
        options = [text for name, value in settings.items() for text in (f"--{name}", str(value))]
        with ServerProcess(workspace, *options) as server:
            warm = run_load(server.url + "predict", image, clients=1, requests_per_client=1)
            if warm["errors"]:
                raise SystemExit(f"the warm-up request failed: {warm['errors']}")
            rounds = [run_load(server.url + "predict", image, clients=args.clients,
                               requests_per_client=args.requests, pid=server.process.pid)
                      for _ in range(args.rounds)]
    print(json.dumps({"machine": f"{cpu_name()}, {os.cpu_count()} cores", "image": "data_samples/grace_hopper.jpg",
                      "settings": settings, "rounds": rounds}, indent=2))


def cpu_name() -> str:
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


if __name__ == "__main__":
    main()
