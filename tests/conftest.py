"""Shared test fixtures: the real fixture pack, the sample portraits, one teacher per session.

Tests never download. Where the fixture pack comes from decides what a test that needs it does:
- $HOLISTIC_LAB_DATA set (CI, `.ci/run`): that folder must hold the pack; a missing folder,
  file or checksum mismatch FAILS the test;
- unset, with ../shared/fixtures/mmpose beside the clone: that folder, same rules;
- unset, no folder (a plain clone): every test that reads a fixture file is SKIPPED with the
  reason, so `make test` still runs everything else.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NO_PACK_REASON = ("fixture pack not found: $HOLISTIC_LAB_DATA is unset and ../shared/fixtures/mmpose is not beside "
                  "the repository (tests never download); set HOLISTIC_LAB_DATA to the mmpose fixture folder to run this")


def pytest_configure(config):
    config.addinivalue_line("markers", "registry_download: the test fakes the registry's download itself")


@pytest.fixture(autouse=True)
def _no_fixture_downloads(request, monkeypatch):
    """A test reaching the registry's download (no local folder for that pack) is skipped, not run online."""
    from holistic_lab import datasets

    if request.node.get_closest_marker("registry_download") is None:
        monkeypatch.setattr(datasets, "_download",
                            lambda name, pack="mmpose": pytest.skip(f"{NO_PACK_REASON} (needs {pack} file {name})"))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The local mmpose fixture pack: skipped without one, a failure when a named one is broken."""
    from holistic_lab.datasets import DATA_ENV, data_dir

    path = data_dir()
    if path is None:
        pytest.skip(NO_PACK_REASON)
    if not (path / "SHA256SUMS").is_file():
        source = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the folder beside the repository"
        pytest.fail(f"fixture pack not found at {path} (from {source}): expected the mmpose fixture folder "
                    f"with its SHA256SUMS")
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


@pytest.fixture(scope="session")
def sample_face_set(tmp_path_factory):
    """The sample portraits with their teacher labels as one TFRecord file: a tiny fine-tuning set
    (with validation_split 0.5, one image trains and one validates)."""
    from holistic_lab.datasets import sample_image, sample_labels, sample_names
    from holistic_lab.formats import tfrecord
    from holistic_lab.formats.sample import Sample

    samples = [Sample.from_result(sample_labels(name), f"{name}.jpg") for name in sample_names()]
    (path,) = tfrecord.write(tmp_path_factory.mktemp("set") / "faces.tfrecord", samples,
                             images=[sample_image(name) for name in sample_names()])
    return path


@pytest.fixture(scope="session")
def crops_by_class() -> dict[str, list]:
    """The hagrid pack's crops by HaGRID class: class -> sorted paths (checksum-checked)."""
    from holistic_lab import datasets

    by_class: dict[str, list] = {}
    for path, label in datasets.hagrid_crops():
        by_class.setdefault(label, []).append(path)
    return by_class
