"""Shared test fixtures: the real fixture pack, the sample portraits, one teacher per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path:
    """The mmpose fixture pack: $HOLISTIC_LAB_DATA, else ../shared/fixtures/mmpose beside the repo."""
    return Path(os.environ.get("HOLISTIC_LAB_DATA", REPO_ROOT.parent / "shared" / "fixtures" / "mmpose"))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    path = fixtures_dir()
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(f"fixture pack not found at {path}: set HOLISTIC_LAB_DATA to the mmpose fixtures folder")
    return path


@pytest.fixture(scope="session")
def teacher():
    from holistic_lab.teacher import MediaPipeTeacher

    with MediaPipeTeacher(static_image_mode=True) as t:
        yield t
