"""Shared test fixtures: the real fixture pack, the sample portraits, one teacher per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")



@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The local mmpose fixture pack (tests never download): a missing pack fails loudly."""
    from holistic_lab.datasets import data_dir

    path = data_dir()
    if path is None or not (path / "SHA256SUMS").is_file():
        pytest.fail(f"fixture pack not found at {path}: set HOLISTIC_LAB_DATA to the mmpose fixtures folder")
    return path


@pytest.fixture(scope="session")
def teacher():
    from holistic_lab.teacher import MediaPipeTeacher

    with MediaPipeTeacher(static_image_mode=True) as t:
        yield t
