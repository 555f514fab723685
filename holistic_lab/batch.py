"""A model over a batch of files (`holistic-lab run`, `holistic-lab label`): a bad file is skipped and named, never the end.

`input_files` turns what the user named (images, folders, videos) into files; `iter_items`
decodes them into images and video frames in order. A file that cannot be read (corrupt,
oversized, not an image, a video that will not open) is skipped with its reason; a video
that ends before the frame count its container declares keeps the frames read and says
how many are missing; an input the model refuses is skipped by name. The skipped lines
travel with the results into the `.npz` (`skipped`, read back by `result.load_skipped`),
so a results file says what it is missing; a batch where nothing could be processed is
an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .files import display_path
from .images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoFrames, load_rgb, pixel_limit
from .result import HolisticResult, save_results

MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def input_files(paths, recursive: bool = True) -> list[Path]:
    """The image and video files named by `paths`, as absolute paths, each once, in order.

    A folder is a folder whatever its name ends with (`clip.mp4/` holds images): its media
    files are taken sorted (searched recursively unless `recursive=False`). A named file
    must be an image or a video; anything missing is a ValueError naming it.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            files += sorted(p for p in found if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in MEDIA_SUFFIXES:
                raise ValueError(f"{display_path(path)}: expected an image ({', '.join(IMAGE_SUFFIXES)}), a folder "
                                 f"of images or a video ({', '.join(VIDEO_SUFFIXES)}), got suffix {path.suffix!r}")
            files.append(path)
        else:
            raise ValueError(f"input not found: {display_path(path)}")
    if not files:
        raise ValueError(f"no image or video files in {', '.join(display_path(p) for p in paths)}")
    return list(dict.fromkeys(path.resolve() for path in files))


def frame_name(video: Path, index: int) -> str:
    """The item name of one video frame: `video#000042`."""
    return f"{video}#{index:06d}"


def split_frame_name(name: str) -> tuple[str, int | None]:
    """(file path, frame index) of an item name; the index is None for an image, whose own
    file name may hold a '#'."""
    path, hash_sign, frame = name.rpartition("#")
    if hash_sign and frame.isdigit() and Path(path).suffix.lower() in VIDEO_SUFFIXES:
        return path, int(frame)
    return name, None


@dataclass
class Item:
    """One image, or one frame of a video (`name` is `video#frame_index`), decoded."""
    name: str
    source: Path
    video: bool
    rgb: np.ndarray


def iter_items(files: list[Path], skipped: list[str], done=frozenset()) -> Iterator[Item]:
    """Every image and video frame of `files` in order; what cannot be read adds a line to
    `skipped` and is passed over. Images named in `done` are not even decoded (a resumed run);
    a video's frames are always decoded, in order, since tracking needs them. A bad pixel
    limit ($HOLISTIC_LAB_MAX_PIXELS) is an error before the first file, not a skip per file."""
    pixel_limit()
    for path in files:
        if not is_video(path):
            if str(path) in done:
                continue
            try:
                rgb = load_rgb(path)
            except ValueError as exc:
                skipped.append(str(exc))
                continue
            except MemoryError:
                skipped.append(f"image {display_path(path)}: too large to decode in this machine's memory")
                continue
            yield Item(str(path), path, False, rgb)
            continue
        frames = VideoFrames(path)
        try:
            for index, rgb in frames:
                yield Item(frame_name(path, index), path, True, rgb)
        except ValueError as exc:  # will not open, too large, no frame at all
            skipped.append(str(exc))
            continue
        if frames.shortfall():
            skipped.append(frames.shortfall())


@dataclass
class Batch:
    """Results by item name (an image path, or `video#frame_index`), and what was skipped, why."""
    names: list[str] = field(default_factory=list)
    results: list[HolisticResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, item: Item, model) -> bool:
        """Run `model.process` on one item and keep the result; a ValueError from the model skips it by name."""
        try:
            result = model.process(item.rgb)
        except ValueError as exc:
            self.skipped.append(f"{display_path(item.name)}: {exc}")
            return False
        self.names.append(item.name)
        self.results.append(result)
        return True

    def save(self, out, overwrite: bool = False) -> Path:
        """Write the results and the skipped lines to `out` (.npz); refuse if nothing was processed."""
        if not self.results:
            raise nothing_processed(self.skipped)
        return save_results(out, self.results, self.names, overwrite=overwrite,
                            skipped=np.array(self.skipped, dtype=str))


def nothing_processed(skipped: list[str]) -> ValueError:
    """The error for a batch where every input was skipped: how many, and the first reason."""
    first = f"; the first: {skipped[0]}" if skipped else ""
    return ValueError(f"nothing processed: all {len(skipped)} inputs were skipped{first}")


def process_path(path, make_model: Callable[[bool], object]) -> Batch:
    """Run `make_model(video).process(rgb)` over an image, a folder of images (not its subfolders) or a video.

    For a video, `make_model(True)` gets the frames in order (tracking); otherwise
    `make_model(False)` gets each image alone.
    """
    batch = Batch()
    models: dict[bool, object] = {}
    for item in iter_items(input_files([path], recursive=False), batch.skipped):
        if item.video not in models:
            models[item.video] = make_model(item.video)
        batch.add(item, models[item.video])
    return batch
