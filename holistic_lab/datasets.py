"""Data a fresh offline machine has: the sample portraits in data_samples/ and their labels.

`data_samples/` holds two public-domain portraits that installed packages also carry
(scikit-image's astronaut, matplotlib's grace_hopper) and `teacher_labels.npz`, made by
`holistic-lab label data_samples --out data_samples/teacher_labels.npz`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import load_rgb
from .result import HolisticResult, load_results

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data_samples"
SAMPLE_FILES = {"astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg"}
SAMPLE_LABELS = "teacher_labels.npz"


def sample_names() -> tuple[str, ...]:
    return tuple(SAMPLE_FILES)


def _sample_file(name: str) -> Path:
    if name not in SAMPLE_FILES:
        raise ValueError(f"unknown sample {name!r}; expected one of {sample_names()}")
    path = SAMPLES_DIR / SAMPLE_FILES[name]
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: data_samples/ ships with the repository (run from a clone)")
    return path


def sample_image(name: str) -> np.ndarray:
    """One sample portrait as uint8 RGB."""
    return load_rgb(_sample_file(name))


def sample_labels(name: str) -> HolisticResult:
    """The teacher's (MediaPipe Holistic's) labels for one sample portrait."""
    file_name = _sample_file(name).name
    names, results = load_results(SAMPLES_DIR / SAMPLE_LABELS)
    by_file = {Path(n).name: r for n, r in zip(names, results)}
    if file_name not in by_file:
        raise RuntimeError(f"{SAMPLE_LABELS} has no labels for {file_name}; regenerate it (see data_samples/README.md)")
    return by_file[file_name]
