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
from typing import Callable

from tqdm.auto import tqdm

from .batch import Batch, frame_name, input_files, iter_items, nothing_processed, split_frame_name
from .files import output_lock
from .result import check_results_output, load_results, save_results


def resolved_name(name: str) -> str:
    """An item name with its file's path made absolute (relative to the current directory)."""
    path, frame = split_frame_name(name)
    resolved = Path(path).resolve()
    return str(resolved) if frame is None else frame_name(resolved, frame)


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
    files = input_files(paths)
    out = check_results_output(out, inputs=files, overwrite=overwrite)
    with output_lock(out):
        return _label_into(out, files, teacher_factory, save_every_s, progress, overwrite)


def _label_into(out: Path, files: list[Path], teacher_factory, save_every_s: float, progress: bool,
                overwrite: bool) -> Path:
    batch = Batch()
    if out.exists() and not overwrite:
        batch.names, batch.results = load_results(out)
    done = {resolved_name(name) for name in batch.names}
    last_save = time.monotonic()
    bar = tqdm(desc="labelling", unit="img", disable=not progress, initial=len(done))

    def labelled(name: str) -> None:
        nonlocal last_save
        done.add(name)
        bar.update(1)
        if time.monotonic() - last_save >= save_every_s:
            save_results(out, batch.results, batch.names, overwrite=overwrite)
            last_save = time.monotonic()

    try:
        label_files(files, batch, teacher_factory, done, labelled)
    finally:
        if batch.results:
            batch.save(out, overwrite=overwrite)
        bar.close()
    for line in batch.skipped:
        print(f"skipped {line}")
    if not batch.results:
        raise nothing_processed(batch.skipped)
    return out


def label_files(files: list[Path], batch: Batch, teacher_factory=None, done=frozenset(),
                labelled: Callable[[str], None] | None = None) -> Batch:
    """Label the items of `files` not named in `done` into `batch`, calling `labelled(name)` after each.

    The one loop every labelling run goes through (`label_paths`, and each work unit of
    `label_sharded`): images share one static-image teacher, each video gets a fresh
    tracking teacher for its frames in order. Teachers are closed on the way out.
    """
    from .teacher import MediaPipeTeacher

    make_teacher = teacher_factory or (lambda video: MediaPipeTeacher(static_image_mode=not video))
    teachers: dict[Path | None, object] = {}  # one for images, one for the current video
    try:
        for item in iter_items(files, batch.skipped, done):
            if item.name in done:
                continue
            key = item.source if item.video else None
            if key not in teachers:
                if item.video:
                    for old in [k for k in teachers if k is not None]:
                        teachers.pop(old).close()
                teachers[key] = make_teacher(item.video)
            if batch.add(item, teachers[key]) and labelled is not None:
                labelled(item.name)
    finally:
        for teacher in teachers.values():
            teacher.close()
    return batch
