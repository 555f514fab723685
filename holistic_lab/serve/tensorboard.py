"""`start_tensorboard`: TensorBoard (the installed package's own CLI) over the jobs' logs, a child
process the caller stops. `holistic-lab serve --tensorboard` runs it on `<workspace>/jobs`: each
fine-tuning job's `jobs/<id>/checkpoints/tensorboard` (or a link to the checkpoint_dir it named)
is one run, its scalars per loss term and a validation crop per epoch.

    board = start_tensorboard(workspace / "jobs", port=6006)    # prints http://127.0.0.1:6006/
    ...
    board.terminate()
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def tensorboard_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def start_tensorboard(logdir, port: int = 6006, host: str = "127.0.0.1") -> subprocess.Popen:
    """TensorBoard on `logdir` at http://host:port/ (loopback by default: it has no login), its
    output discarded; prints the URL. The caller terminates the returned process."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ValueError(f"logdir: {logdir} is not a folder")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port: expected 1 to 65535, got {port!r}")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
               "--port", str(port), "--load_fast", "false"]  # the fast loader is a separate binary it may download
    board = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    print(f"TensorBoard on {logdir}: {tensorboard_url(host, port)}", flush=True)
    return board
