"""`ServeSettings`: everything `holistic-lab serve` is told, with the safe defaults of a server
that binds to loopback. One frozen object, read by every route through `app.state.settings`."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "HOLISTIC_LAB_TOKEN"
# An upload larger than this is refused before it is read in full (a phone photo is 2-8 MB).
MAX_UPLOAD_BYTES = 20 << 20
# Checked from the image header before decoding: a 64-megapixel camera still passes; a
# decompression bomb (a few KB of PNG claiming 100k x 100k) does not.
MAX_UPLOAD_PIXELS = 64_000_000


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': only this machine can reach the server."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    workspace: Path = Path("workspace")  # jobs, their logs and checkpoints, variants a client may name
    variant: Path | None = None          # the variant served first; None: the shipped models
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None             # required on the job and model endpoints when set
    pool_size: int = 1                   # pipelines serving /predict at once (one per worker thread)
    queue_limit: int = 8                 # requests waiting for a pipeline beyond which /predict says 503
    queue_timeout_s: float = 30.0        # how long a request waits for a pipeline before 503
    cache_size: int = 64                 # results kept, keyed by (image sha256, variant)
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    job_slots: int = 1                   # fine-tuning jobs run at once; the rest queue
    num_threads: int = 1                 # TFLite threads per pipeline
    job_grace_s: float = 10.0            # a cancelled job's seconds between SIGTERM and SIGKILL

    def __post_init__(self):
        object.__setattr__(self, "workspace", Path(self.workspace).expanduser().resolve())
        if self.variant is not None:
            object.__setattr__(self, "variant", Path(self.variant).expanduser())
        for name in ("pool_size", "queue_limit", "cache_size", "max_upload_bytes", "max_pixels", "job_slots",
                     "num_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "cache_size" else 1):
                raise ValueError(f"ServeSettings.{name}: expected a positive integer, got {value!r}")
        if not self.job_grace_s > 0:
            raise ValueError(f"ServeSettings.job_grace_s: expected > 0 seconds, got {self.job_grace_s!r}")
        if not self.queue_timeout_s > 0:
            raise ValueError(f"ServeSettings.queue_timeout_s: expected > 0 seconds, got {self.queue_timeout_s!r}")
        if self.token is None and os.environ.get(TOKEN_ENV):
            object.__setattr__(self, "token", os.environ[TOKEN_ENV])
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"serving on {self.host!r} (not loopback) needs an API token: --token or ${TOKEN_ENV}")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"
