"""The model being served: a bounded pool of cascades (TFLite interpreters are not thread-safe,
so each pipeline serves one request at a time), and the switch to another variant.

    served = ServedModels(settings)
    with served.pipeline() as (pipeline, generation):     # waits for a free one, or ApiError 503
        result = pipeline.process(rgb)                    # generation.name: the variant's name
    served.activate(Path("work/variants/int8"))           # atomic; a broken variant raises ValueError

Switching is atomic: a request holds the generation it started on, so in-flight requests finish
on the old pipelines, which are closed when their last request returns. A variant is built and
tried on a real image before it replaces the served one; if that fails the old one keeps serving.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..pipeline import HolisticPipeline
from .errors import ApiError
from .settings import ServeSettings

SHIPPED = "shipped"


@dataclass
class Generation:
    """One served variant: its name, folder (None: shipped) and its free pipelines. `key` is unique
    per activation: two variants may carry the same manifest name, so results are cached by key."""
    key: str
    name: str
    folder: Path | None
    free: queue.Queue
    pipelines: list
    users: int = 0
    retired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close_if_done(self) -> None:
        with self.lock:
            done = self.retired and self.users == 0
        if done:
            for pipeline in self.pipelines:
                pipeline.close()


def build_pipeline(folder: Path | None, static_image_mode: bool = True, num_threads: int = 1) -> HolisticPipeline:
    if folder is None:
        return HolisticPipeline(static_image_mode=static_image_mode, num_threads=num_threads)
    return HolisticPipeline.from_variant(folder, static_image_mode=static_image_mode, num_threads=num_threads)


def variant_name(folder: Path | None) -> str:
    if folder is None:
        return SHIPPED
    from ..variants import read_variant
    return read_variant(folder).name


class ServedModels:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._waiting = 0
        self._lock = threading.Lock()   # guards _current and _waiting
        self._switch = threading.Lock()  # one activation at a time
        self._serial = 0
        self._current = self._build(settings.variant)

    def _build(self, folder: Path | None) -> Generation:
        name = variant_name(folder)
        pipelines = [build_pipeline(folder, num_threads=self.settings.num_threads)
                     for _ in range(self.settings.pool_size)]
        free = queue.Queue()
        for pipeline in pipelines:
            free.put(pipeline)
        self._serial += 1
        return Generation(f"{self._serial}:{name}", name, folder, free, pipelines)

    @property
    def name(self) -> str:
        return self._current.name

    @property
    def folder(self) -> Path | None:
        return self._current.folder

    @property
    def key(self) -> str:
        """The served generation's cache key (`Generation.key`)."""
        return self._current.key

    @contextlib.contextmanager
    def pipeline(self):
        """A free pipeline of the served variant and its `Generation`, for one request. Raises ApiError 503
        when `queue_limit` requests already wait, or when none is free within `queue_timeout_s`."""
        with self._lock:
            if self._waiting >= self.settings.queue_limit:
                raise ApiError(503, "busy", f"the server is busy: {self._waiting} requests already wait for a "
                               "pipeline; try again shortly", headers={"Retry-After": "1"})
            self._waiting += 1
            generation = self._current
            with generation.lock:
                generation.users += 1
        try:
            try:
                pipeline = generation.free.get(timeout=self.settings.queue_timeout_s)
            finally:
                with self._lock:
                    self._waiting -= 1
            try:
                yield pipeline, generation
            finally:
                generation.free.put(pipeline)
        except queue.Empty:
            raise ApiError(503, "busy", f"no pipeline became free within {self.settings.queue_timeout_s:g} s; "
                           "try again shortly", headers={"Retry-After": "1"}) from None
        finally:
            with generation.lock:
                generation.users -= 1
            generation.close_if_done()

    def video_pipeline(self) -> tuple[HolisticPipeline, str]:
        """A new pipeline of the served variant in video mode (tracking), for one WebSocket
        connection; the caller closes it."""
        generation = self._current
        return build_pipeline(generation.folder, static_image_mode=False,
                              num_threads=self.settings.num_threads), generation.name

    def activate(self, folder: Path | None, probe=None) -> str:
        """Serve the variant in `folder` (None: shipped) from the next request on. `probe(pipeline)`
        runs a built pipeline on a real image first; any error leaves the old variant serving and
        is raised as ValueError naming the variant."""
        with self._switch:
            generation = None
            try:
                generation = self._build(folder)
                if probe is not None:
                    probe(generation.pipelines[0])
            except Exception as error:  # a broken variant: checksum, signature, interpreter or probe
                if generation is not None:
                    for pipeline in generation.pipelines:
                        pipeline.close()
                raise ValueError(f"variant {folder}: {error}") from None
            with self._lock:
                old, self._current = self._current, generation
            with old.lock:
                old.retired = True
            old.close_if_done()
            return generation.name

    def close(self) -> None:
        with self._lock:
            current = self._current
        with current.lock:
            current.retired = True
        current.close_if_done()
