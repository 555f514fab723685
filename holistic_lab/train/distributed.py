"""Fine-tuning on several workers with tf.distribute: the cluster's TF_CONFIG, the strategy, and
N workers started on this machine's loopback.

    holistic-lab finetune ... --workers hostA:12345,hostB:12345 --index 0     # on host A
    holistic-lab finetune ... --workers hostA:12345,hostB:12345 --index 1     # on host B
    holistic-lab finetune ... --distributed-workers 2                         # both on this machine

TensorFlow's own engine does the work: `MultiWorkerMirroredStrategy` (a copy of the model per
worker, gradients all-reduced by collective ops over gRPC) when TF_CONFIG names more than one
worker; `MirroredStrategy` when this machine has several GPUs; the default strategy otherwise.
The training loop runs the same code under each (`strategy().scope()`).

Worker 0 is the chief: the only one that writes the checkpoint folder and the variant. TF_CONFIG
is {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}; one
already in the environment (a cluster scheduler's) is validated and used as it is.

`run_local_workers` starts N workers of the same command on free loopback ports as children of
the caller, in the caller's process group (a job API cancel, which kills the job's group, ends
them too), each output line prefixed with its worker; if any worker fails every other is killed,
and all are killed when the caller leaves (an error, Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ..native_logs import is_benign
from ..net import free_port

TF_CONFIG_ENV = "TF_CONFIG"
MAX_LOCAL_WORKERS = 8   # more loopback workers than that only share the same cores
STOP_GRACE_S = 10.0
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$")


@dataclass(frozen=True)
class Cluster:
    """The workers' addresses and which of them this process is; worker 0 is the chief."""
    workers: tuple[str, ...]
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def tf_config(self) -> dict:
        return {"cluster": {"worker": list(self.workers)}, "task": {"type": "worker", "index": self.index}}


def parse_address(text: str) -> str:
    """`host:port` (a host name, an IPv4 address or a [bracketed] IPv6 one; port 1 to 65535)."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        why = ("the port must be 1 to 65535" if sep and _HOST.match(host) and port.isdigit()
               else "expected host:port such as 10.0.0.2:12345")
        raise ValueError(f"worker address {text!r}: {why}")
    return f"{host}:{int(port)}"


def parse_workers(workers) -> tuple[str, ...]:
    """Worker addresses from 'a:1,b:2' or a list; malformed or duplicate addresses refused by name."""
    items = [part for part in workers.split(",")] if isinstance(workers, str) else list(workers)
    if not items or not any(str(item).strip() for item in items):
        raise ValueError("workers: expected one or more host:port addresses, got none")
    addresses = tuple(parse_address(item) for item in items)
    seen = set()
    for address in addresses:
        if address in seen:
            raise ValueError(f"worker address {address!r} is listed twice; each worker needs its own host:port")
        seen.add(address)
    return addresses


def cluster(workers, index) -> Cluster:
    """This process as worker `index` of `workers`; an index outside them refused by name."""
    addresses = parse_workers(workers)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(addresses):
        raise ValueError(f"worker index {index!r}: expected 0 to {len(addresses) - 1} for {len(addresses)} workers")
    return Cluster(addresses, index)


def parse_tf_config(text: str) -> Cluster:
    """A TF_CONFIG's JSON as a Cluster: refused by what is wrong (not JSON, no cluster or task,
    a task type other than worker, an index outside the workers, a bad address)."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{TF_CONFIG_ENV}: not JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ValueError(f"{TF_CONFIG_ENV}: expected an object with \"cluster\" and \"task\", got {text[:200]!r}")
    if not isinstance(config.get("task"), dict):
        raise ValueError(f"{TF_CONFIG_ENV}: no \"task\" object (this process's type and index)")
    roles = sorted(set(config["cluster"]) - {"worker"})
    if roles:
        raise ValueError(f"{TF_CONFIG_ENV}: cluster roles {roles} are not supported; list every machine under "
                         "\"worker\" (worker 0 is the chief)")
    workers, task = config["cluster"].get("worker"), config["task"]
    if not isinstance(workers, list):
        raise ValueError(f"{TF_CONFIG_ENV}: cluster.worker must be a list of host:port, got {workers!r}")
    if task.get("type") != "worker":
        raise ValueError(f"{TF_CONFIG_ENV}: task.type must be \"worker\", got {task.get('type')!r}")
    try:
        return cluster(workers, task.get("index"))
    except ValueError as error:
        raise ValueError(f"{TF_CONFIG_ENV}: {error}") from None


def environment_cluster() -> Cluster | None:
    """The cluster TF_CONFIG describes, None when it is unset or empty."""
    text = os.environ.get(TF_CONFIG_ENV, "").strip()
    return parse_tf_config(text) if text else None


def join_cluster(workers, index) -> Cluster:
    """Make this process worker `index` of `workers`: validated, then written to TF_CONFIG (before
    any TensorFlow op, which MultiWorkerMirroredStrategy requires)."""
    member = cluster(workers, index)
    os.environ[TF_CONFIG_ENV] = json.dumps(member.tf_config)
    return member


def num_workers() -> int:
    member = environment_cluster()
    return 1 if member is None else len(member.workers)


def is_chief() -> bool:
    member = environment_cluster()
    return member is None or member.is_chief


def worker_index() -> int:
    member = environment_cluster()
    return 0 if member is None else member.index


def files_of_worker(file_count: int, worker: int, workers: int) -> list[int]:
    """The file numbers worker `worker` of `workers` reads when a set is sharded by file: every
    workers-th file from its own index (tf.data's FILE auto-shard's rule)."""
    return list(range(worker, file_count, workers))


def counts_of_workers(strategy, count: int) -> list[int]:
    """Every worker's `count`, in worker order, the same list on each (one all-reduce: each worker
    adds its count at its own place in a vector). Every worker must call it at the same point."""
    import numpy as np
    import tensorflow as tf

    workers = num_workers()
    local_replicas = strategy.num_replicas_in_sync // workers
    vector = np.zeros(workers, np.float64)   # exact below 2**53; float collectives run on every device
    vector[worker_index()] = count

    def add():
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(vector))

    # in a tf.function: run eagerly, the collective strategy warns of its overhead on every worker
    total = strategy.experimental_local_results(tf.function(lambda: strategy.run(add))())[0].numpy()
    return [int(round(value)) // local_replicas for value in total]   # each local replica added it once


@functools.lru_cache(maxsize=None)
def _strategy_for(tf_config: str):
    import tensorflow as tf

    if num_workers() > 1:
        # gRPC collectives between the workers; every worker must reach this line
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy():
    """The tf.distribute strategy for this process: multi-worker when TF_CONFIG names more than one
    worker, mirrored over the local GPUs when there are several, else the default. Made once per
    process (TensorFlow allows one MultiWorkerMirroredStrategy, before any other op)."""
    environment_cluster()   # a malformed TF_CONFIG is refused by name, not by TensorFlow's traceback
    return _strategy_for(os.environ.get(TF_CONFIG_ENV, "").strip())


def check_local_workers(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LOCAL_WORKERS:
        raise ValueError(f"distributed_workers: {count!r} local workers asked; expected 1 to {MAX_LOCAL_WORKERS}")
    return count


def loopback_cluster(count: int) -> tuple[str, ...]:
    """`count` distinct free loopback addresses."""
    ports: list[int] = []
    while len(ports) < check_local_workers(count):
        port = free_port()
        if port not in ports:
            ports.append(port)
    return tuple(f"127.0.0.1:{port}" for port in ports)


def run_local_workers(command: list[str], count: int, timeout_s: float | None = None, env: dict | None = None,
                      out=None) -> int:
    """Run `command` (a program's argv) as `count` workers of one loopback cluster, each with its
    TF_CONFIG, and return the chief's exit code (a failed worker's code when one failed first).
    `out` (default stdout) gets every worker's lines prefixed `[worker i] `, less native_logs'
    benign start-up chatter; after `timeout_s` every worker is killed and TimeoutError raised.
    No worker outlives this call."""
    out = sys.stdout if out is None else out
    addresses = loopback_cluster(count)
    workers: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    lock = threading.Lock()

    def relay(index: int, stream) -> None:
        for line in iter(stream.readline, ""):
            if is_benign(line) or not line.strip():   # TensorFlow's start-up chatter, once per worker
                continue
            with lock:
                out.write(f"[worker {index}] {line}")
                out.flush()
        stream.close()

    previous = _raise_on_sigterm()
    try:
        for index in range(count):
            config = json.dumps(Cluster(addresses, index).tf_config)
            worker_env = {**os.environ, **(env or {}), TF_CONFIG_ENV: config, "PYTHONUNBUFFERED": "1"}
            workers.append(subprocess.Popen(command, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, text=True, errors="replace"))
            readers.append(threading.Thread(target=relay, args=(index, workers[-1].stdout), daemon=True))
            readers[-1].start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            codes = [worker.poll() for worker in workers]
            failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                index, code = failed[0]
                if index != 0:
                    with lock:
                        out.write(f"worker {index} failed (exit code {code}); stopping the others\n")
                return code
            if all(code == 0 for code in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{count} workers still running after {timeout_s:g} s; stopped them")
            time.sleep(0.2)
    finally:
        _stop(workers)
        for reader in readers:
            reader.join(timeout=5)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop(workers: list[subprocess.Popen]) -> None:
    """SIGTERM each running worker, SIGKILL after STOP_GRACE_S; every one waited for."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _raise_on_sigterm():
    """In the main thread, SIGTERM raises SystemExit (so `finally` stops the workers); the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, leave)
