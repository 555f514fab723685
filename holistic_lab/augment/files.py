"""Augment a labelled image set on disk: the `.npz` that `holistic-lab label` writes, in, copies out.

Each labelled image gets `copies` augmented versions, written as PNG files next to one
results `.npz` (the same format, names the new files' absolute paths), so the output feeds
training exactly like the input. Video frames (`video#index` names) are skipped with a
message: extract them as images first. A name relative to a folder (older `label` files)
is looked for from the current folder, then from the labels file's folder and each
folder above it; a found image must have the labelled size.
"""
from __future__ import annotations

from pathlib import Path

from ..batch import split_frame_name
from ..files import check_output_file, check_output_folder, display_path, output_lock
from ..images import load_rgb, save_rgb
from ..result import check_results_output, is_results_file, load_results, save_results
from .presets import make_augmenter


MAX_COPIES = 1000  # output names are planned up front, so an absurd count would fill memory before any work


def find_labelled_image(name: str, labels_path) -> Path:
    """The image file a labels `.npz` names (see the module docstring); `Path(name)` if none is found."""
    path = Path(name)
    if path.is_absolute():
        return path
    labels_folder = Path(labels_path).resolve().parent
    candidates = [Path.cwd() / path] + [folder / path for folder in (labels_folder, *labels_folder.parents)]
    return next((candidate for candidate in candidates if candidate.is_file()), path)


def augment_labelled_files(labels_path, out_dir, preset_name: str = "train", copies: int = 4,
                           seed: int = 0, overwrite: bool = False) -> tuple[Path, list[str]]:
    """Write `copies` augmented PNGs per labelled image and `out_dir/labels.npz`; returns (npz, skipped).

    Nothing is written when no image can be read, and an existing file in `out_dir` that an
    earlier augmentation did not write is refused (unless `overwrite`), before any work.
    """
    if not 1 <= copies <= MAX_COPIES:
        raise ValueError(f"copies must be from 1 to {MAX_COPIES}, got {copies}")
    augmenter = make_augmenter(preset_name, seed=seed)
    out_dir = check_output_folder(out_dir)
    out_npz = check_results_output(out_dir / "labels.npz", inputs=[labels_path], overwrite=overwrite)
    with output_lock(out_npz):  # before the checks, so a run starting meanwhile cannot change what they saw
        names, results = load_results(labels_path)
        images = {index: find_labelled_image(name, labels_path) for index, name in enumerate(names)
                  if split_frame_name(name)[1] is None}
        # the input's index keeps a/img.jpg and b/img.png from writing the same file
        outputs = {index: [out_dir / f"{index:05d}_{image.stem}_{preset_name}_{copy:03d}.png" for copy in range(copies)]
                   for index, image in images.items()}
        earlier = ({str(Path(n).resolve()) for n in load_results(out_npz)[0]}
                   if out_npz.exists() and is_results_file(out_npz) else set())
        for path in (path for paths in outputs.values() for path in paths if path.exists()):
            check_output_file(path, is_ours=lambda existing: str(existing.resolve()) in earlier, inputs=images.values(),
                              overwrite=overwrite, kind=f"an image listed in {display_path(out_npz)}")
        new_names, new_results, skipped, unread = [], [], [], []
        for index, (name, labels) in enumerate(zip(names, results)):
            if index not in images:
                skipped.append(f"{display_path(name)}: a video frame; extract frames as images first")
                continue
            try:
                rgb = load_rgb(images[index])
            except ValueError as exc:
                unread.append(str(exc))
                continue
            if rgb.shape[:2] != (labels.height, labels.width):
                unread.append(f"{display_path(images[index])} is {rgb.shape[1]}x{rgb.shape[0]}, but {display_path(name)} was labelled "
                              f"at {labels.width}x{labels.height}: not the labelled image")
                continue
            for path in outputs[index]:
                aug_rgb, aug_labels = augmenter(rgb, labels)
                save_rgb(path, aug_rgb)
                new_names.append(str(path.resolve()))
                new_results.append(aug_labels)
        if unread and not new_results:
            raise ValueError(f"none of the {len(images)} images named in {display_path(labels_path)} could be read, so nothing "
                             f"was written (first: {unread[0]}); relative names are looked for from the current "
                             "folder and from the labels file's folder and the folders above it")
        if not new_results:
            raise ValueError(f"{display_path(labels_path)} names no images to augment ({len(names)} entries, "
                             f"{len(names) - len(images)} of them video frames), so nothing was written")
        return save_results(out_npz, new_results, new_names, overwrite=overwrite, preset=preset_name), skipped + unread
