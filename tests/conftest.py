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


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write in, root included (root ignores permission bits: make it immutable)."""
    import subprocess

    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without `chattr +i`: no folder is read-only to root")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)
