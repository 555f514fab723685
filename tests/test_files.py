"""atomic_write: the finished file replaces the old one; a failed write keeps the old file and leaves no temporary."""
import pytest

from holistic_lab.files import atomic_write


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
