"""Gesture classes from folders: one sub-folder per class, its images the examples, checked first.

    items = class_items("../shared/fixtures/hagrid", HAGRID_NAMED)   # the 8 classes the job API names
    items = class_items("my_gestures")                                # every sub-folder is a class
    items = add_class(items, "my_pinch_photos", "pinch")              # one more class from a plain folder
    train, test = split_items(items, test_fraction=0.2, seed=0)

Everything is checked before any image is decoded for training, so a bad folder fails in a
second, not after minutes of feature extraction: a class with no images, a class name asked for
that has no folder, two classes with the same name (also differing only in case), a label that
is not a plain name, an image file whose header is not an image's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets import HAGRID_CLASSES, HAGRID_TO_GESTURE
from ..files import display_path
from ..images import IMAGE_SUFFIXES, image_size
from ..pipeline.gesture import LABEL_PATTERN

# The 8 classes the fine-tuning job API names, as HaGRID folder -> label (HaGRID has no pinch).
HAGRID_NAMED = {**HAGRID_TO_GESTURE, "none": "none"}
# All 13 HaGRID classes of the pack, with the job API's name where it has one.
HAGRID_ALL = {name: HAGRID_TO_GESTURE.get(name, name) for name in HAGRID_CLASSES}
CLASS_PRESETS = {"hagrid8": HAGRID_NAMED, "hagrid13": HAGRID_ALL}


def check_label(label: str, where: str) -> str:
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise ValueError(f"{where}: class name {label!r} must be 1-64 letters, digits, '_' or '-', "
                         "starting with a letter or digit")
    return label


def parse_classes(spec: str | None) -> dict[str, str] | None:
    """A `--classes` value: None or "all" (every sub-folder), a preset ("hagrid8"), or
    "folder:label,folder:label,..." (a bare "folder" keeps its name as the label)."""
    if spec is None or spec == "all":
        return None
    if spec in CLASS_PRESETS:
        return dict(CLASS_PRESETS[spec])
    classes = {}
    for entry in spec.split(","):
        folder, _, label = entry.strip().partition(":")
        folder, label = folder.strip(), (label.strip() or folder.strip())
        if not folder:
            raise ValueError(f"--classes: empty entry in {spec!r}; expected 'folder:label,...', 'all' or one of "
                             f"{', '.join(CLASS_PRESETS)}")
        if folder in classes:
            raise ValueError(f"--classes: folder {folder!r} named twice")
        classes[folder] = label
    return classes


def image_files(folder: Path, label: str) -> list[Path]:
    """The image files directly in `folder` (sorted), each header checked; none is an error."""
    files = sorted(path for path in folder.iterdir()
                   if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."))
    if not files:
        raise ValueError(f"class {label!r}: {display_path(folder)} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for path in files:
        if image_size(path) is None:
            raise ValueError(f"class {label!r}: {display_path(path)} is not an image (its header cannot be read)")
    return files


def _check_unique(labels: list[str], where: str) -> None:
    seen: dict[str, str] = {}
    for label in labels:
        key = label.casefold()
        if key in seen:
            raise ValueError(f"{where}: class name {label!r} given twice"
                             + (f" (as {seen[key]!r})" if seen[key] != label else ""))
        seen[key] = label


def check_labels(labels: tuple[str, ...], where: str) -> tuple[str, ...]:
    """`labels` if they are at least two plain, distinct (also ignoring case) names."""
    for label in labels:
        check_label(label, where)
    _check_unique(list(labels), where)
    if len(labels) < 2:
        raise ValueError(f"{where}: a classifier needs at least two classes, got {sorted(labels)}")
    return labels


def class_items(folder, classes: dict[str, str] | list[str] | None = None) -> list[tuple[Path, str]]:
    """(image path, label) for every image of the chosen class folders under `folder`.

    classes: None (every sub-folder, its name the label), a list of sub-folder names, or a
    mapping sub-folder -> label (e.g. `HAGRID_NAMED`). At least two classes."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"gesture data {display_path(root)} is not a folder of class folders")
    available = sorted(path.name for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if classes is None:
        classes = {name: name for name in available}
    elif not isinstance(classes, dict):
        classes = {name: name for name in classes}
    missing = [name for name in classes if name not in available]
    if missing:
        raise ValueError(f"gesture data {display_path(root)}: no class folder {', '.join(map(repr, missing))}; "
                         f"it has {', '.join(available) or 'no sub-folders'}")
    check_labels(tuple(classes.values()), f"gesture data {display_path(root)}")
    return [(path, label) for name, label in classes.items() for path in image_files(root / name, label)]


def add_class(items: list[tuple[Path, str]], folder, label: str) -> list[tuple[Path, str]]:
    """`items` plus every image directly in `folder` as the new class `label` (a user's own
    gesture, e.g. pinch, which HaGRID lacks)."""
    root = Path(folder)
    check_label(label, f"new class from {display_path(root)}")
    if not root.is_dir():
        raise ValueError(f"new class {label!r}: {display_path(root)} is not a folder of images")
    _check_unique([*dict.fromkeys(item_label for _, item_label in items), label], f"new class from {display_path(root)}")
    return [*items, *((path, label) for path in image_files(root, label))]


def labels_of(items: list[tuple[Path, str]]) -> tuple[str, ...]:
    """The class labels in first-seen order (the classifier's output order)."""
    return tuple(dict.fromkeys(label for _, label in items))


def split_items(items: list[tuple[Path, str]], test_fraction: float, seed: int = 0
                ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """A seeded split, stratified by class and grouped by file stem: HaGRID crops of one photo
    (the same stem in two class folders: two hands of one person) never straddle the split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    groups: dict[str, list[int]] = {}
    for index, (path, _) in enumerate(items):
        groups.setdefault(Path(path).stem, []).append(index)
    counts = {label: 0 for label in labels_of(items)}
    for _, label in items:
        counts[label] += 1
    quota = {label: int(count * test_fraction + 0.5) for label, count in counts.items()}  # halves up, not to even
    taken = dict.fromkeys(counts, 0)
    test = set()
    order = list(groups)
    np.random.default_rng(seed).shuffle(order)
    for stem in order:
        members = groups[stem]
        if all(taken[items[i][1]] < quota[items[i][1]] for i in members):
            test.update(members)
            for i in members:
                taken[items[i][1]] += 1
    return ([item for i, item in enumerate(items) if i not in test], [item for i, item in enumerate(items) if i in test])
