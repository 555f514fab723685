"""Batch labelling: run the teacher over image folders and video files into one `.npz`.

The output file is also the checkpoint: it is rewritten atomically every few items,
so an interrupted run leaves a valid file with everything labelled so far, and the
same command run again skips those items and goes on, however the inputs are spelled.
Item names are the image's absolute path, or `video_path#frame_index` for video frames
(files from older versions hold paths relative to the folder `label` ran in; resuming
resolves them to match). A run holds a lock on its output, so a second run into it is refused.
A file that cannot be read (a corrupt or oversized image, a video that cannot be opened)
is skipped and named, and a video that ends early says how many of its declared frames
were read; those lines are printed and recorded in the output (`result.load_skipped`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from .batch import nothing_processed
from .files import output_lock
from .images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoFrames, load_rgb
from .result import check_results_output, load_results, save_results


def expand_inputs(paths) -> list[Path]:
    """Image and video files named by `paths` (folders are searched recursively), sorted, as absolute paths."""
    files = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise ValueError(f"{path}: not an image or video file (suffix {path.suffix!r})")
            files.append(path)
        else:
            raise ValueError(f"input not found: {path}")
    if not files:
        raise ValueError(f"no image or video files under {[str(p) for p in paths]}")
    return [path.resolve() for path in files]


def resolved_name(name: str) -> str:
    """An item name with its file's path made absolute (relative to the current directory)."""
    path, hash_sign, frame = name.rpartition("#")
    if not (hash_sign and frame.isdigit() and Path(path).suffix.lower() in VIDEO_SUFFIXES):
        path, hash_sign, frame = name, "", ""
    return f"{Path(path).resolve()}{hash_sign}{frame}"


def _items(files: list[Path], skipped: list[str]) -> Iterator[tuple[str, Path, object]]:
    """(item name, source file, image or path to load) for every image and video frame; a video
    that cannot be read, or ends early, adds a line to `skipped`."""
    for path in files:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            frames = VideoFrames(path)
            try:
                for index, frame in frames:
                    yield f"{path}#{index:06d}", path, frame
            except ValueError as exc:
                skipped.append(str(exc))
            if frames.shortfall():
                skipped.append(frames.shortfall())
        else:
            yield str(path), path, path


def label_paths(paths, out, teacher_factory=None, save_every_s: float = 10.0, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Label every image and video frame under `paths` into `out` (.npz), resuming if it exists.

    Images share one static-image teacher; each video gets its own tracking teacher
    (video mode), so tracking never carries over from one clip to the next. Unreadable
    images and videos are reported and skipped, never fatal, unless nothing at all could be
    labelled (a ValueError). An `out` that exists and is not a results file (unless
    `overwrite`: then it is replaced, not resumed), or that another run is writing, is
    refused before any work. Returns the output path.
    """
    files = expand_inputs(paths)
    out = check_results_output(out, inputs=files, overwrite=overwrite)
    with output_lock(out):
        return _label_into(out, files, teacher_factory, save_every_s, progress, overwrite)


def _label_into(out: Path, files: list[Path], teacher_factory, save_every_s: float, progress: bool,
                overwrite: bool) -> Path:
    from .teacher import MediaPipeTeacher

    names, results = load_results(out) if out.exists() and not overwrite else ([], [])
    done = {resolved_name(name) for name in names}
    make_teacher = teacher_factory or (lambda video: MediaPipeTeacher(static_image_mode=not video))
    teachers: dict[Path | None, object] = {}
    skipped: list[str] = []
    last_save = time.monotonic()
    bar = tqdm(desc="labelling", unit="img", disable=not progress, initial=len(done))
    try:
        for name, source, item in _items(files, skipped):
            if name in done:
                continue
            video = source if source.suffix.lower() in VIDEO_SUFFIXES else None
            if video is not None and video not in teachers:
                for old in [k for k in teachers if k is not None]:
                    teachers.pop(old).close()
                teachers[video] = make_teacher(True)
            elif video is None and None not in teachers:
                teachers[None] = make_teacher(False)
            try:
                rgb = item if video is not None else load_rgb(item)
            except ValueError as exc:
                skipped.append(str(exc))
                continue
            results.append(teachers[video].process(rgb))
            names.append(name)
            bar.update(1)
            if time.monotonic() - last_save >= save_every_s:
                save_results(out, results, names, overwrite=overwrite)
                last_save = time.monotonic()
    finally:
        if names:
            save_results(out, results, names, overwrite=overwrite, skipped=np.array(skipped, dtype=str))
        bar.close()
        for teacher in teachers.values():
            teacher.close()
    for line in skipped:
        print(f"skipped {line}")
    if not names:
        raise nothing_processed(skipped)
    return out
