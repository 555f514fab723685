"""Safe outputs: atomic writes, no file the user has is replaced, one run per output at a time."""
import os
import subprocess
import sys

import numpy as np
import pytest

from holistic_lab.files import atomic_write, check_output_file, check_output_folder, output_lock


def test_atomic_write_replaces_the_file(tmp_path):
    path = atomic_write(tmp_path / "sub" / "a.txt", lambda p: p.write_text("new"))
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def fail(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(ValueError, match="a.txt: the writer produced no file"):
        atomic_write(path, lambda temporary: None)


def test_an_output_never_replaces_what_the_user_has(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 a photo")
    (tmp_path / "link.jpg").symlink_to(photo)
    with pytest.raises(ValueError, match="link.jpg is also an input of this run"):
        check_output_file(tmp_path / "link.jpg", inputs=[photo], overwrite=True)
    with pytest.raises(ValueError, match="photo.jpg already exists and is not a results file; .* --overwrite"):
        check_output_file(photo, is_ours=lambda path: False, kind="a results file")
    assert check_output_file(photo, is_ours=lambda path: True) == photo
    assert check_output_file(photo, overwrite=True) == photo
    assert check_output_file(tmp_path / "new" / "deeper" / "out.npz") == tmp_path / "new" / "deeper" / "out.npz"
    with pytest.raises(ValueError, match="is a folder; expected a file"):
        check_output_file(tmp_path)
    with pytest.raises(ValueError, match="photo.jpg is a file; expected a folder"):
        check_output_folder(photo)
    with pytest.raises(ValueError, match="photo.jpg is a file, not a folder"):
        check_output_file(photo / "out.npz")
    assert photo.read_bytes() == b"\xff\xd8 a photo"


def test_a_read_only_folder_is_refused_before_any_work(read_only_folder):
    with pytest.raises(ValueError, match="cannot write in .*read_only"):
        check_output_file(read_only_folder / "sub" / "out.npz")
    with pytest.raises(ValueError, match="cannot write in .*read_only"):
        check_output_folder(read_only_folder)


def test_an_output_locked_by_another_process_is_refused_by_name(tmp_path):
    out = tmp_path / "labels.npz"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from holistic_lab.files import output_lock\n"
         f"with output_lock({str(out)!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match="labels.npz is being written by another run"):
            with output_lock(out):
                pass
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    with output_lock(out):
        assert (tmp_path / ".labels.npz.lock").exists()
    assert list(tmp_path.iterdir()) == []  # the lock file is removed once released


def test_an_output_reached_through_a_symlink_is_locked_and_written_at_its_target(tmp_path):
    target = tmp_path / "data" / "labels.npz"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    with output_lock(target):
        with pytest.raises(ValueError, match="being written by another run"):
            with output_lock(link):
                pass
    atomic_write(link, lambda p: p.write_text("new"))
    assert link.is_symlink() and target.read_text() == "new"
