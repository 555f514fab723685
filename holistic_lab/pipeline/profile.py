"""Per-stage latency of the Python cascade, with MediaPipe's end-to-end time beside it.

Warm-up runs first, then `repeats` timed runs over the same images for each thread
count; per stage the median and p90 of its milliseconds per image (a stage that did not
run on an image, e.g. a hand not found, counts as 0 there), and its mean with its share
of the mean total (shares of means add up to 100%; medians do not add up); end to end, our median and MediaPipe's (`mp.solutions.holistic`,
static mode, same images, same process, interleaved) and their ratio.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import numpy as np

from ..datasets import data_dir, fixture_image, sample_image, sample_names
from ..native_logs import filtered_native_stderr
from .holistic import HolisticPipeline

# Fixture images where every stage runs (pose, face and both hands found).
LATENCY_FIXTURES = ("aic/ff945ae2e729f24eea992814639d59b3bdec8bd8.jpg", "panoptic/ex2_2.flv_000040_l.jpg")


@dataclass
class StageLatency:
    stage: str
    mean_ms: float
    share: float  # of the summed stage means (the mean total)
    median_ms: float
    p90_ms: float


@dataclass
class LatencyProfile:
    num_threads: int | dict[str, int]
    stages: list[StageLatency]
    ours_ms: float
    ours_p90_ms: float
    mediapipe_ms: float
    mediapipe_p90_ms: float
    ours_cpu_ms: float       # process CPU time per image, all threads (spin-waiting workers
    mediapipe_cpu_ms: float  # included): above the wall time when more than one core was busy
    workers: int = 1         # HolisticPipeline(workers=...): face and hands one after another (1) or at once

    @property
    def threads_label(self) -> str:
        """"1 thread", "2 threads", or "pose_landmark=2, others 1" for a per-stage setting; with
        ", face and hands at once (2 workers)" when the branches ran in a thread pool."""
        if isinstance(self.num_threads, dict):
            label = ", ".join(f"{stage}={n}" for stage, n in self.num_threads.items()) + ", others 1"
        else:
            label = f"{self.num_threads} thread{'s' if self.num_threads > 1 else ''}"
        return label + (f", face and hands at once ({self.workers} workers)" if self.workers > 1 else "")

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.mediapipe_ms


def machine_info() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"


def latency_images() -> list[np.ndarray]:
    """The data_samples portraits plus LATENCY_FIXTURES when the fixture pack is on this machine."""
    images = [sample_image(name) for name in sample_names()]
    return images + ([fixture_image(name) for name in LATENCY_FIXTURES] if data_dir() is not None else [])


def profile_latency(images: list[np.ndarray], num_threads: int | dict[str, int], repeats: int = 30, warmup: int = 3,
                    pipeline_kwargs: dict | None = None) -> LatencyProfile:
    """Time our stages and both end-to-end pipelines on `images`, `repeats` rounds each.

    mp.solutions.holistic exposes no thread setting; it runs its own default (XNNPACK) CPU
    threading, which is why its time is the same reference for every `num_threads`. Beside
    wall time, each call's process CPU time is recorded: CPU above wall time means more than
    one core was busy during the call (working in parallel, or a thread pool spin-waiting).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    pipeline = HolisticPipeline(static_image_mode=True, num_threads=num_threads, **(pipeline_kwargs or {}))
    ours, theirs, stage_ms, ours_cpu, theirs_cpu = [], [], [], [], []
    with filtered_native_stderr():  # MediaPipe's start-up lines come at import and first run
        import mediapipe as mp

        holistic = mp.solutions.holistic.Holistic(static_image_mode=True, model_complexity=1)
        holistic.process(images[0])
        pipeline.process(images[0])
    with holistic:
        for round_index in range(warmup + repeats):
            for rgb in images:
                start, cpu_start = time.perf_counter(), time.process_time()
                holistic.process(rgb)
                mediapipe_ms = (time.perf_counter() - start) * 1e3
                mediapipe_cpu_ms = (time.process_time() - cpu_start) * 1e3
                cpu_start = time.process_time()
                pipeline.process(rgb)
                ours_cpu_ms = (time.process_time() - cpu_start) * 1e3
                if round_index >= warmup:
                    theirs.append(mediapipe_ms)
                    theirs_cpu.append(mediapipe_cpu_ms)
                    ours.append(pipeline.last_timings["total"])
                    ours_cpu.append(ours_cpu_ms)
                    stage_ms.append(dict(pipeline.last_timings))
    names = [k for k in dict.fromkeys(k for t in stage_ms for k in t) if k != "total"]
    per_stage = {name: np.array([t.get(name, 0.0) for t in stage_ms]) for name in names}
    mean_total = sum(values.mean() for values in per_stage.values())
    stages = [StageLatency(name, float(values.mean()), float(values.mean() / mean_total), float(np.median(values)),
                           float(np.percentile(values, 90))) for name, values in per_stage.items()]
    return LatencyProfile(num_threads, stages, float(np.median(ours)), float(np.percentile(ours, 90)),
                          float(np.median(theirs)), float(np.percentile(theirs, 90)),
                          float(np.median(ours_cpu)), float(np.median(theirs_cpu)), pipeline.workers)


def latency_table(profiles: list[LatencyProfile]) -> str:
    """Markdown: one stage table per thread count, then the end-to-end comparison."""
    lines = []
    for p in profiles:
        lines += [f"**{p.threads_label}**", "", "| stage | mean ms | share of mean total | median ms | p90 ms |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {s.stage} | {s.mean_ms:.2f} | {s.share:.0%} | {s.median_ms:.2f} | {s.p90_ms:.2f} |"
                  for s in p.stages]
        lines.append("")
    lines += ["| threads | ours median ms | ours p90 ms | ours CPU ms | mp.solutions.holistic median ms | p90 ms "
              "| its CPU ms | ratio |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {p.threads_label} | {p.ours_ms:.1f} | {p.ours_p90_ms:.1f} | {p.ours_cpu_ms:.1f} | {p.mediapipe_ms:.1f} "
              f"| {p.mediapipe_p90_ms:.1f} | {p.mediapipe_cpu_ms:.1f} | {p.ratio:.2f}x |" for p in profiles]
    return "\n".join(lines)


def hot_spots(images: list[np.ndarray], repeats: int = 10, top: int = 12, **pipeline_kwargs) -> list[dict]:
    """Where the cascade's own Python time goes: cProfile over `repeats` rounds of `images` (after a
    warm-up round), the `top` functions by their own time (callees excluded), in ms per image.
    Model invokes show up as `invoke` (the interpreter's C++ time, GIL released); everything else
    is pre/post-processing. Profiling slows Python calls down, so read shares, not absolute times."""
    import cProfile
    import pstats

    if repeats < 1 or top < 1:
        raise ValueError(f"repeats and top must be >= 1, got {repeats}, {top}")
    if pipeline_kwargs.get("workers", 1) != 1:  # cProfile sees only the calling thread: the branches would vanish
        raise ValueError(f"hot_spots profiles one thread: give workers=1, got workers={pipeline_kwargs['workers']}")
    with HolisticPipeline(**pipeline_kwargs) as pipeline:
        for rgb in images:
            pipeline.process(rgb)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(repeats):
            for rgb in images:
                pipeline.process(rgb)
        profiler.disable()
    calls = repeats * len(images)
    stats = pstats.Stats(profiler).stats
    rows = [{"function": f"{os.path.basename(file)}:{line} {name}" if line else name, "calls per image": count / calls,
             "own ms per image": own * 1e3 / calls, "with callees ms per image": cumulative * 1e3 / calls}
            for (file, line, name), (_, count, own, cumulative, _) in stats.items()]
    return sorted(rows, key=lambda row: -row["own ms per image"])[:top]
