"""Augment a labelled image set on disk: the `.npz` that `holistic-lab label` writes, in, copies out.

Each labelled image gets `copies` augmented versions, written as PNG files next to one
results `.npz` (the same format, names pointing at the new files), so the output feeds
training exactly like the input. Video frames (`video#index` names) are skipped with a
message: extract them as images first.
"""
from __future__ import annotations

from pathlib import Path

from ..files import display_path
from ..images import load_rgb, save_rgb
from ..result import load_results, save_results
from .presets import make_augmenter


def augment_labelled_files(labels_path, out_dir, preset_name: str = "train", copies: int = 4,
                           seed: int = 0) -> tuple[Path, list[str]]:
    """Write `copies` augmented PNGs per labelled image and `out_dir/labels.npz`; returns (npz, skipped).

    Image names in the input are paths as `holistic-lab label` wrote them (relative to the
    directory it ran in, which must be the current one).
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    augmenter = make_augmenter(preset_name, seed=seed)
    names, results = load_results(labels_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    new_names, new_results, skipped = [], [], []
    for index, (name, labels) in enumerate(zip(names, results)):
        if "#" in Path(name).name:
            skipped.append(f"{display_path(name)}: a video frame; extract frames as images first")
            continue
        try:
            rgb = load_rgb(name)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        for copy in range(copies):
            aug_rgb, aug_labels = augmenter(rgb, labels)
            # the input's index keeps a/img.jpg and b/img.png from writing the same file
            path = out_dir / f"{index:05d}_{Path(name).stem}_{preset_name}_{copy:03d}.png"
            save_rgb(path, aug_rgb)
            new_names.append(str(path))
            new_results.append(aug_labels)
    return save_results(out_dir / "labels.npz", new_results, new_names, preset=preset_name), skipped
