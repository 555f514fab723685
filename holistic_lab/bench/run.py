"""The measuring runner: MediaPipe itself and each variant, side by side, into one report.

    run_bench({"shipped": None, "int8": "variants/int8"}, "report/", image_paths(), clip=fixture clip)

In the order it measures (each piece saved as soon as it is measured, so Ctrl-C keeps it):
1. variants: per stage the kind and the size of the .tflite it runs (the shipped file where the
   variant does not replace the stage);
2. image mode, per thread count: every contestant on every image in turn (MediaPipe, then each
   variant, image by image, round by round, after warm-up rounds), so a slow drift of the machine
   hits them all alike; end to end is timed around `process` the same way for all of them, each
   stage from `HolisticPipeline.last_timings` (0 ms on an image where it did not run); the ratio
   to MediaPipe is paired by image and round (`stats.median_ratio(paired=True)`);
3. video mode, per thread count: the first `video_frames` frames of a clip, tracked, the
   contestants taking turns frame by frame; frames per second = frames / their summed wall time;
4. peak memory: a fresh Python process per contestant builds its cascade and runs the images;
   its peak resident set (Linux VmHWM, reset when the process starts, since the kernel carries the
   parent's peak across exec; the libraries it loads included: that is what a user pays);
5. the machine's peak (`peak.gemm_peak`) and each stage's MACs (`macs.total_macs`, read from the
   .tflite it runs) over its median time per invoke: achieved GMAC/s and the fraction of the peak
   at the same thread count; end to end: the MACs of one image (invokes per image counted) over
   the median end-to-end time, against the peak at `threads x workers` threads;
6. accuracy on human annotations (`metrics.evaluate_fixtures`): body PCK (and OKS AP on COCO-style
   sets), face NME, hand PCK and EPE per fixture set, for MediaPipe and each variant.

`mp.solutions.holistic` has no thread setting: it runs its own graph scheduler and XNNPACK's
default threads. Our cascade runs `threads` interpreter threads per stage and `workers` threads for
the face/hand branches (`HolisticPipeline(workers=...)`); `threads x workers` is its thread budget.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..datasets import SAMPLE_FILES, data_dir, fixture_path, sample_path
from ..files import check_output_file, display_path
from ..images import iter_video_frames, load_rgb
from ..native_logs import filtered_native_stderr
from ..pipeline.gesture import MODEL_FILE as GESTURE_MODEL_FILE
from ..pipeline.profile import LATENCY_FIXTURES
from ..progress import progress_bar
from ..settings import QUICK
from ..variants import STAGES, read_variant
from .machine import machine_info
from .macs import total_macs
from .schema import END_TO_END, MEDIAPIPE, Ratio, is_report_file, timing
from .stats import median_ratio

SHIPPED = "shipped"
# HolisticPipeline.last_timings key -> stage (both hands' invokes count for their stage)
STAGE_OF_KEY = {"pose_detection": "pose_detection", "pose_landmark": "pose_landmark",
                "face_detection": "face_detection", "face_landmark": "face_landmark",
                **{f"{side}_{step}": stage for side in ("left_hand", "right_hand")
                   for step, stage in (("recrop", "hand_recrop"), ("landmark", "hand_landmark"), ("gesture", "gesture"))},
                "pre_post_processing": "pre_post_processing"}


def accuracy_set_names(text: str | None) -> tuple[str, ...]:
    """`--accuracy`: fixture set names (comma-separated), `none`, or None for every set when the
    fixture pack is on this machine (none without it: accuracy needs human annotations)."""
    from ..datasets import fixture_names

    if text is None:
        return fixture_names() if data_dir() is not None else ()
    if text.strip().lower() == "none":
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in fixture_names()]
    if unknown or not names:
        raise ValueError(f"--accuracy: unknown fixture set {', '.join(unknown) or repr(text)}; expected some of "
                         f"{', '.join(fixture_names())} or none")
    if data_dir() is None:
        raise ValueError("--accuracy: the fixture pack is not on this machine (set HOLISTIC_LAB_DATA); or give none")
    return names


def image_paths() -> list[Path]:
    """The data_samples portraits plus the fixtures where every stage runs (both hands found)."""
    paths = [sample_path(name) for name in SAMPLE_FILES]
    return paths + ([fixture_path(name) for name in LATENCY_FIXTURES] if data_dir() is not None else [])


def parse_variants(specs) -> dict[str, Path | None]:
    """`shipped` or variant folders -> name -> folder (None: the shipped models), each folder read
    and checked (`read_variant`); names are the folders' names, made unique with their parents."""
    variants: dict[str, Path | None] = {}
    seen: dict[Path, str] = {}  # resolved folder -> how it was given: `v`, `./v/` or a link to it are one variant
    for spec in specs:
        spec = str(spec).strip()
        if not spec:
            raise ValueError("--variants: an empty name; give shipped or variant folders, separated by commas")
        if spec == SHIPPED:
            folder, name = None, SHIPPED
        else:
            folder = Path(spec)
            read_variant(folder)  # a missing, malformed or stale variant is refused here, before anything runs
            resolved = folder.resolve()
            if resolved in seen:
                raise ValueError(f"--variants: {spec} and {seen[resolved]} are the same folder, given twice")
            seen[resolved] = spec
            name = resolved.name
            if name in variants or name in (SHIPPED, MEDIAPIPE):
                name = f"{resolved.parent.name}/{resolved.name}"
        if name in variants:  # shipped twice, or a third folder of the same name and parent name
            raise ValueError(f"--variants: {spec} is given twice" if folder is None else
                             f"--variants: {spec} would be named {name!r}, like another variant; rename its folder")
        variants[name] = folder
    if not variants:
        raise ValueError("--variants: give at least one of shipped or a variant folder")
    return variants


def stage_files(folder: Path | None) -> dict[str, Path]:
    """Stage -> the .tflite the cascade runs for it under this variant (shipped where not replaced)."""
    from ..mediapipe_models import model_path

    files = {stage: Path(model_path(shipped)) for stage, (_, shipped) in STAGES.items()}
    if folder is not None:
        variant = read_variant(folder)
        files.update(variant.stages)
        if variant.gesture is not None:  # its classifier's model runs as the hand stage (Variant.pipeline_kwargs)
            files["hand_landmark"] = variant.gesture / GESTURE_MODEL_FILE
    return files


def variant_entry(name: str, folder: Path | None) -> dict:
    """The report's `variants` entry: kinds and file sizes per stage."""
    if name == MEDIAPIPE:
        return {"name": MEDIAPIPE, "path": MEDIAPIPE, "total_bytes": sum(p.stat().st_size for p in stage_files(None).values())}
    files = stage_files(folder)
    kinds = {stage: "shipped" for stage in files}
    if folder is not None:
        variant = read_variant(folder)
        for stage in variant.stages:
            kinds[stage] = str(variant.manifest["stages"][stage].get("kind", variant.manifest.get("kind", "variant")))
        if variant.gesture is not None:
            kinds["hand_landmark"] = "gesture"
    sizes = {stage: path.stat().st_size for stage, path in files.items()}
    return {"name": name, "path": SHIPPED if folder is None else str(folder), "kinds": kinds, "stage_bytes": sizes,
            "total_bytes": sum(sizes.values())}


class MediaPipeContestant:
    """`mp.solutions.holistic` behind the pipeline's `process`; it reports no stage timings."""

    def __init__(self, static_image_mode: bool):
        with filtered_native_stderr():
            import mediapipe as mp

            self.holistic = mp.solutions.holistic.Holistic(static_image_mode=static_image_mode, model_complexity=1)
            self.holistic.process(np.zeros((64, 64, 3), np.uint8))  # XNNPACK set up outside the timing
        self.last_timings: dict[str, float] = {}

    def process(self, rgb: np.ndarray) -> None:
        self.holistic.process(rgb)

    def close(self) -> None:
        self.holistic.close()


def stage_thread_counts(threads: int, stage_threads: dict | None) -> dict[str, int]:
    """Stage -> interpreter threads: `threads` everywhere except the stages `stage_threads` names."""
    from ..pipeline.holistic import threads_per_stage

    return threads_per_stage({**dict.fromkeys(threads_per_stage(threads), threads), **(stage_threads or {})})


def contestants(variants: dict, static_image_mode: bool, threads: int, workers: int,
                stage_threads: dict | None = None) -> dict:
    """name -> something with `process(rgb)` and `last_timings`: MediaPipe first, then each variant."""
    from ..pipeline import HolisticPipeline

    built = {MEDIAPIPE: MediaPipeContestant(static_image_mode)}
    for name, folder in variants.items():
        kwargs = {"static_image_mode": static_image_mode, "num_threads": stage_thread_counts(threads, stage_threads),
                  "workers": workers}
        built[name] = HolisticPipeline(**kwargs) if folder is None else HolisticPipeline.from_variant(folder, **kwargs)
    return built


class Samples:
    """Per contestant: end-to-end ms per call, per-stage ms per call, and each stage's ms per invoke."""

    def __init__(self, names):
        self.end_to_end = {name: [] for name in names}
        self.stages = {name: {} for name in names}
        self.invokes = {name: {} for name in names}

    def add(self, name: str, total_ms: float, last_timings: dict) -> None:
        calls = len(self.end_to_end[name])
        self.end_to_end[name].append(total_ms)
        stage_ms: dict[str, float] = {}
        for key, ms in last_timings.items():
            stage = STAGE_OF_KEY.get(key)
            if stage is not None:
                stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
                if stage != "pre_post_processing":
                    self.invokes[name].setdefault(stage, []).append(ms)
        for stage in set(stage_ms) | set(self.stages[name]):  # 0 ms where a stage did not run
            self.stages[name].setdefault(stage, [0.0] * calls).append(stage_ms.get(stage, 0.0))


def timed_turns(built: dict, frames, samples: Samples, record: bool, turn: int = 0) -> None:
    """Every contestant on each frame in turn, timed around `process`; the order rotates by `turn`
    (and by frame), so no contestant always runs right after the same one (a pool still spinning, a
    warm cache)."""
    names = list(built)
    for index, rgb in enumerate(frames):
        shift = (turn + index) % len(names)
        for name in names[shift:] + names[:shift]:
            contestant = built[name]
            start = time.perf_counter()
            contestant.process(rgb)
            total_ms = (time.perf_counter() - start) * 1e3
            if record:
                samples.add(name, total_ms, contestant.last_timings)


def latency_row(name: str, threads: int, mode: str, samples: Samples, frames_per_s: float | None = None) -> dict:
    order = list(dict.fromkeys(STAGE_OF_KEY.values()))  # the cascade's order, whatever ran first
    stages = sorted(samples.stages[name].items(), key=lambda item: order.index(item[0]))
    row = {"variant": name, "threads": threads, "mode": mode, "end_to_end": timing(samples.end_to_end[name]),
           "stages": {stage: timing(ms) for stage, ms in stages}, "frames_per_s": frames_per_s}
    if name != MEDIAPIPE:
        row["ratio_to_mediapipe"] = Ratio.of(median_ratio(samples.end_to_end[name], samples.end_to_end[MEDIAPIPE],
                                                          paired=True))
    return row


_MEMORY_PROBE = """
import json, re, sys
with open("/proc/self/clear_refs", "w") as marks:  # the peak mark survives exec: start it from this process
    marks.write("5")
from holistic_lab.images import load_rgb
folder, paths = sys.argv[1], json.loads(sys.argv[2])
if folder == "mediapipe":
    from holistic_lab.bench.run import MediaPipeContestant
    cascade = MediaPipeContestant(True)
else:
    from holistic_lab.pipeline import HolisticPipeline
    kwargs = {"workers": int(sys.argv[3]), "num_threads": json.loads(sys.argv[4])}
    cascade = HolisticPipeline(**kwargs) if folder == "shipped" else HolisticPipeline.from_variant(folder, **kwargs)
for path in paths:
    cascade.process(load_rgb(path))
with open("/proc/self/status") as status:
    peak_kb = int(re.search(r"VmHWM:\\s*(\\d+) kB", status.read()).group(1))
print(json.dumps({"peak_rss_mb": peak_kb / 1024}))
"""


def peak_rss_mb(folder: Path | str | None, paths: list[Path], workers: int, num_threads: dict | None = None) -> float:
    """Peak resident memory (MB) of a fresh process that builds this cascade (its threads as timed)
    and runs `paths`."""
    target = SHIPPED if folder is None else str(folder)
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, target, json.dumps([str(p) for p in paths]),
                           str(workers), json.dumps(num_threads or 1)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {target} failed: {done.stderr.strip()[-800:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def accuracy_rows(name: str, cascade, sets, progress: bool) -> list[dict]:
    """AccuracyRows of one cascade over the fixture sets: body PCK/OKS AP, face NME, hand PCK/EPE."""
    from ..metrics import evaluate_fixtures

    rows = []
    for row in evaluate_fixtures(cascade, list(sets), progress=progress).rows:
        annotated = int(str(row["found"]).split("/")[1])
        if annotated == 0:
            continue
        part, dataset = row["part"], row["dataset"]
        pck = next((value for key, value in row.items() if key.startswith("PCK")), None)
        if part.endswith("hand"):
            metrics, part, dataset = {"pck": pck, "epe": row.get("EPE px")}, "hand", f"{dataset} {part}"
        elif part == "body":
            metrics = {"pck": pck, "oks": row.get("OKS AP")}
        elif part == "face":
            metrics = {"nme": row.get("NME")}
        else:
            continue  # feet: no metric of their own in the report
        rows += [{"variant": name, "part": part, "metric": metric, "value": float(value), "n": annotated,
                  "dataset": dataset} for metric, value in metrics.items() if value is not None and np.isfinite(value)]
    return rows


def budget_threads(threads: int, workers: int, stage_threads: dict | None = None) -> int:
    """How many cores the cascade can keep busy: interpreter threads x workers, or a stage's own larger
    count, at most the cores this process may use."""
    wanted = max(threads * workers, *(stage_threads or {}).values(), 1)
    return min(wanted, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def macs_rows(name: str, folder, threads: int, workers: int, samples: Samples, peaks: dict,
              stage_threads: dict | None = None) -> list[dict]:
    """Achieved GMAC/s per stage (per invoke) and end to end (per image), and their fraction of the peak
    at the stage's own thread count."""
    counts = stage_thread_counts(threads, stage_threads)
    files = stage_files(folder)
    rows, image_macs = [], 0.0
    calls = len(samples.end_to_end[name])
    for stage, invokes in samples.invokes[name].items():
        if stage not in files or not invokes:
            continue
        macs = total_macs(files[stage])
        rate = macs / (np.median(invokes) * 1e-3) / 1e9
        rows.append({"variant": name, "stage": stage, "threads": counts.get(stage, threads), "macs": macs,
                     "gmacs_per_s": rate, "fraction_of_peak": rate / peaks[counts.get(stage, threads)]})
        image_macs += macs * len(invokes) / calls
    rate = image_macs / (np.median(samples.end_to_end[name]) * 1e-3) / 1e9
    budget = budget_threads(threads, workers, stage_threads)  # the end-to-end row is against the cores it could use
    rows.append({"variant": name, "stage": END_TO_END, "threads": budget, "macs": int(round(image_macs)),
                 "gmacs_per_s": rate, "fraction_of_peak": rate / peaks[budget]})
    return rows


def run_bench(variants: dict, out, images=None, clip=None, threads=(1,), workers: int = 2, repeats: int = 5,
              warmup: int = 1, video_frames: int = 60, accuracy_sets=(), memory: bool = True,
              overwrite: bool = False, command: str | None = None, progress: bool = True,
              stage_threads: dict | None = None, gesture_items=None, gesture_set: str = ""):
    """Measure MediaPipe and every variant (name -> folder, None: shipped; see `parse_variants`) and
    write `out/report.json` and `out/report.html`; returns the Report. Ctrl-C keeps what was measured
    (the report says "interrupted"). `clip`: a video for video mode (None: skipped); `accuracy_sets`:
    fixture sets to score on (empty: skipped, e.g. without the fixture pack); `stage_threads`: stage ->
    interpreter threads that overrides `threads` for those stages in every row (e.g. {"pose_landmark": 2}:
    the pose stages run alone, before the branches, so a second core is free for them); `gesture_items`:
    (image path, label) pairs, held out from training, to score each variant's gesture head on (its
    accuracy with a bootstrap interval, named `gesture_set` in the report)."""
    from ..pipeline.holistic import check_workers
    from .builder import ReportBuilder
    from .html import is_report_page
    from .peak import GEMM_SHAPE, gemm_peak

    check_workers(workers)
    try:
        stage_thread_counts(1, stage_threads)
    except ValueError as exc:  # an unknown stage or a bad count, said as the option a user typed
        raise ValueError(f"stage threads: {exc}".replace("num_threads", "stage threads")) from None
    threads = tuple(threads)
    if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
        raise ValueError(f"threads must be whole numbers >= 1, got {threads!r}")
    if len(set(threads)) != len(threads):  # each count would be measured twice, its rows doubled in the report
        raise ValueError(f"threads: each count once, got {threads!r}")
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("video_frames", video_frames, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if MEDIAPIPE in variants:
        raise ValueError(f"{MEDIAPIPE!r} is measured in every report; do not name a variant so")
    paths = [Path(p) for p in (image_paths() if images is None else images)]
    if not paths:
        raise ValueError("images: none to measure on")
    frames = [load_rgb(path) for path in paths]  # a corrupt or missing image is refused here, before any timing
    classifiers = gesture_classifiers(variants, gesture_items)
    if clip is not None:  # so is a clip that does not decode, not after the image timings
        with contextlib.closing(iter_video_frames(clip)) as clip_frames:
            next(clip_frames)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = check_output_file(out / "report.json", is_ours=is_report_file, overwrite=overwrite,
                                  kind="a holistic-lab benchmark report")
    html_path = check_output_file(out / "report.html", is_ours=is_report_page, overwrite=overwrite,
                                  kind="a holistic-lab benchmark page")
    settings = {"images": ", ".join(display_path(p) for p in paths), "n_images": len(paths), "repeats": repeats,
                "warmup": warmup, "threads": list(threads), "workers": workers,
                "stage_threads": dict(stage_threads or {}), "quick": QUICK,
                "command": command or shlex.join(sys.argv), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    names = [MEDIAPIPE, *variants]
    builder = ReportBuilder(json_path, machine_info(), settings, html_path=html_path)
    with builder:
        for name in names:
            builder.add_variant(variant_entry(name, variants.get(name)))
        builder.save("variants")
        image_samples = {}
        steps = len(threads) * ((warmup + repeats) + (video_frames if clip is not None else 0))
        bar = progress_bar(None, "bench latency", enabled=progress, total=steps) if progress else None
        try:
            for count in threads:
                built = contestants(variants, True, count, workers, stage_threads)
                samples = Samples(names)
                for round_index in range(warmup + repeats):
                    timed_turns(built, frames, samples, record=round_index >= warmup, turn=round_index)
                    if bar is not None:
                        bar.update(1)
                image_samples[count] = samples
                for name in names:
                    builder.add_latency(latency_row(name, count, "image", samples))
                builder.save(f"image latency, {count} thread{'s' * (count > 1)}")
                if clip is not None:
                    built = contestants(variants, False, count, workers, stage_threads)
                    samples = Samples(names)
                    for index, frame in iter_video_frames(clip):
                        if index >= video_frames:
                            break
                        timed_turns(built, [frame], samples, record=True, turn=index)
                        if bar is not None:
                            bar.update(1)
                    for name in names:
                        seconds = sum(samples.end_to_end[name]) / 1e3
                        builder.add_latency(latency_row(name, count, "video", samples, len(samples.end_to_end[name]) / seconds))
                    builder.save(f"video latency, {count} thread{'s' * (count > 1)}")
        finally:
            if bar is not None:
                bar.close()
        if memory:
            for name in progress_bar(names, "bench memory", enabled=progress):
                builder.add_memory({"variant": name, "peak_rss_mb": peak_rss_mb(
                    MEDIAPIPE if name == MEDIAPIPE else variants[name], paths, workers,
                    stage_thread_counts(threads[0], stage_threads))})
            builder.save("peak memory")
        peak_threads = sorted(set(threads) | {budget_threads(t, workers, stage_threads) for t in threads}
                              | set((stage_threads or {}).values()))
        peaks = {count: peak.gmacs for count, peak in gemm_peak(peak_threads).items()}
        for count, gmacs in peaks.items():
            builder.add_peak({"threads": count, "gmacs": gmacs,
                              "method": "{}x{}x{} float32 GEMM (Dense), TFLite XNNPACK".format(*GEMM_SHAPE)})
        for count in threads:
            for name, folder in variants.items():
                for row in macs_rows(name, folder, count, workers, image_samples[count], peaks, stage_threads):
                    builder.add_macs(row)
        builder.save("MACs and peak")
        if accuracy_sets:
            from ..pipeline import HolisticPipeline
            from ..teacher import MediaPipeTeacher

            for name in progress_bar(names, "bench accuracy", enabled=progress):
                folder = variants.get(name)
                cascade = (MediaPipeTeacher() if name == MEDIAPIPE else HolisticPipeline(workers=workers)
                           if folder is None else HolisticPipeline.from_variant(folder, workers=workers))
                for row in accuracy_rows(name, cascade, accuracy_sets, progress=False):
                    builder.add_accuracy(row)
                builder.save(f"accuracy {name}")
        for name, classifier in classifiers.items():
            from ..gestures.evaluate import score_classifier

            score = score_classifier(classifier, gesture_items, progress=progress)
            builder.add_accuracy({"variant": name, "part": "gesture", "metric": "accuracy", "value": score.accuracy,
                                  "n": score.n, "low": score.low, "high": score.high, "dataset": gesture_set})
            builder.save(f"gesture accuracy {name}")
    return builder.report


def gesture_classifiers(variants: dict, items) -> dict:
    """name -> the gesture classifier of each variant that has one, checked against the labelled
    images (`items`: (path, label)) before anything runs; {} without items."""
    if not items:
        return {}
    from ..gestures import GestureClassifier

    classifiers = {name: GestureClassifier.load(read_variant(folder).gesture) for name, folder in variants.items()
                   if folder is not None and read_variant(folder).gesture is not None}
    if not classifiers:
        raise ValueError("gesture images given, but no variant has a gesture head to score on them")
    labels = {label for _, label in items}
    for name, classifier in classifiers.items():
        unknown = sorted(labels - set(classifier.labels))
        if unknown:
            raise ValueError(f"gesture images of classes {unknown} that {name}'s classifier does not know "
                             f"({', '.join(classifier.labels)})")
    return classifiers
