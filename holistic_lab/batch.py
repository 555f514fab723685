"""A model over a batch of files (`holistic-lab run`): a bad file is skipped and named, never the end.

A path is an image, a folder of images, or a video (tracked frame to frame). An image
that cannot be read (corrupt, oversized, not an image) is skipped with its reason; a
video that ends before the frame count its container declares keeps the frames read
and says how many are missing. The skipped lines travel with the results into the
`.npz` (`skipped`, read back by `result.load_skipped`), so a results file says what it
is missing; a batch where nothing could be processed is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .files import display_path
from .images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoFrames, load_rgb
from .result import HolisticResult, save_results


@dataclass
class Batch:
    """Results by item name (an image path, or `video#frame_index`), and what was skipped, why."""
    names: list[str] = field(default_factory=list)
    results: list[HolisticResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

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


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {display_path(folder)}")
    return files


def process_path(path, make_model: Callable[[bool], object]) -> Batch:
    """Run `make_model(video).process(rgb)` over an image, a folder of images or a video file.

    A folder is a folder whatever its name ends with (`clip.mp4/` holds images). For a video,
    `make_model(True)` gets the frames in order (tracking); otherwise `make_model(False)`
    gets each image alone.
    """
    path = Path(path)
    batch = Batch()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        files = image_files(path) if path.is_dir() else [path]
        model = make_model(False)
        for file in files:
            try:
                batch.results.append(model.process(load_rgb(file)))
            except ValueError as exc:
                batch.skipped.append(str(exc))
                continue
            batch.names.append(str(file))
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        model, frames = make_model(True), VideoFrames(path)
        try:
            for index, rgb in frames:
                batch.results.append(model.process(rgb))
                batch.names.append(f"{path}#{index:06d}")
        except ValueError as exc:
            batch.skipped.append(str(exc))
        if frames.shortfall():
            batch.skipped.append(frames.shortfall())
    elif not path.exists():
        raise ValueError(f"input not found: {display_path(path)}")
    else:
        raise ValueError(f"{display_path(path)}: expected an image ({', '.join(IMAGE_SUFFIXES)}), a folder of "
                         f"images or a video ({', '.join(VIDEO_SUFFIXES)})")
    return batch
