"""Files on disk: writing outputs safely, and naming any path in a message.

Every writer of results, labels, records, images and models writes through `atomic_write`.
The checks run before the work: `result.save_results`, `coco_wholebody.save` and the
TFRecord writer call them themselves; the lower-level `images.save_rgb` and
`convert.files.save_keras` leave them to their caller (the CLI and `augment` check first).

`check_output_file` / `check_output_folder` run before any work starts and refuse an
output that would lose something the user has: a file this project did not make (unless
the caller passes `overwrite=True`, the CLI's `--overwrite`), an input of the same run,
a folder where a file is expected (or the reverse), or a place that cannot be written.
`output_lock` keeps two runs from writing the same output at once.
`atomic_write` writes into a temporary folder beside the target and then renames the
finished file onto it, so an interrupted or failed write never leaves a half-written
file under the final name and keeps whatever file was there before. The temporary file
keeps the target's name (some writers, e.g. Keras, choose the format by the suffix).
A file name may hold bytes that are not UTF-8 (Python keeps them as surrogate escapes,
which a UTF-8 terminal or log cannot print); `display_path` shows them as backslash escapes.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_writable_folder(folder, what: str = "output") -> None:
    """Refuse (ValueError) a folder that cannot be created or written, before any work is done."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {display_path(folder)}: {display_path(existing)} is a file, not a folder")
    try:  # a real probe: os.access says yes to root on a read-only or immutable folder
        with tempfile.TemporaryFile(dir=existing, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {display_path(folder)}: cannot write in {display_path(existing)} ({exc.strerror})") from exc


def check_output_file(path, *, is_ours: Callable[[Path], bool] | None = None, inputs: Iterable = (),
                      overwrite: bool = False, kind: str = "a file holistic-lab wrote",
                      what: str = "output") -> Path:
    """Return `path` if writing it loses nothing; else raise a ValueError naming it.

    Refused: a folder; an input of the same run (even with `overwrite`); an existing file
    that `is_ours` does not recognise (`kind` says what was expected) unless `overwrite`;
    a folder that cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {display_path(path)} is a folder; expected a file name")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise ValueError(f"{what} {display_path(path)} is also an input of this run; choose another name")
    if path.exists() and not overwrite and not (is_ours is not None and is_ours(path)):
        raise ValueError(f"{what} {display_path(path)} already exists and is not {kind}; "
                         "choose another name, or pass --overwrite to replace it")
    check_writable_folder(path.parent, what)
    return path


def check_output_folder(path, what: str = "output folder") -> Path:
    """Return `path` if it is (or can become) a writable folder; a file there is refused, never replaced."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {display_path(path)} is a file; expected a folder")
    if path.is_symlink() and not path.exists():  # mkdir cannot make it: refused now, not after the work
        raise ValueError(f"{what} {display_path(path)} is a symbolic link to {display_path(os.readlink(path))}, "
                         "which does not exist; create that folder or choose another")
    check_writable_folder(path, what)
    return path


@contextlib.contextmanager
def output_lock(path, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive lock on `path` (a `.<name>.lock` file beside it) while writing it.

    A second holder, in this process or another, is refused at once with a ValueError.
    The lock file is removed on release; a run that opened it just before gets a
    removed file and tries again on the new one, so two runs never both hold it. A
    symbolic link is locked at the file it points to, like `atomic_write` writes there.
    """
    path = written_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"{what} {display_path(path)} is being written by another run (it holds {display_path(lock_path)}); "
                             "wait for it to finish or choose another name") from None
        try:
            current = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def written_path(path) -> Path:
    """The file a write to `path` lands in: `path`, or where it points if it is a symbolic link
    (replacing the link itself would leave its target stale and the user's link gone)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def atomic_write(path, write_fn: Callable[[Path], object]) -> Path:
    """Call `write_fn(temporary_path)`, then move that file onto `path` (or the file a symbolic
    link there points to); on any failure the temporary is removed."""
    path = written_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial-") as folder:
        temporary = Path(folder) / path.name
        write_fn(temporary)
        if not temporary.is_file():
            raise ValueError(f"{display_path(path)}: the writer produced no file")
        os.replace(temporary, path)
    return path


def read_json_object(path, what: str, max_bytes: int | None = None) -> dict:
    """A JSON file holding an object (`what` says what it should be, for the errors); a
    ValueError naming the file when it is not a regular file (a folder, a pipe, a device), cannot
    be read, is larger than `max_bytes`, is not JSON, nests too deeply or is not an object."""
    path = Path(path)
    if path.exists() and not path.is_file():  # opening a named pipe waits for a writer, forever
        raise ValueError(f"{display_path(path)}: not a regular file, expected {what}")
    try:
        with open(path, "rb") as file:
            data = file.read(-1 if max_bytes is None else max_bytes + 1)
    except OSError as error:
        raise ValueError(f"{display_path(path)}: cannot read it ({error.strerror or error})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{display_path(path)}: too large for {what} (over {max_bytes} bytes)")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{display_path(path)}: not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{display_path(path)}: JSON nested too deeply to be {what}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{display_path(path)}: expected a JSON object ({what}), got {type(value).__name__}")
    return value


def sha256_file(path) -> str:
    """The SHA-256 of a file as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_path(path) -> str:
    """`path` as printable text: bytes that are not UTF-8 appear as `\\xNN` escapes (b"bad\\xff.png" -> "bad\\xff.png")."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_manifest(path, where: str, kind: str, fmt: str, version: int, max_bytes: int, missing: str,
                  noun: str = "file") -> dict:
    """A holistic-lab manifest (a JSON object with `format` and `version`) read and checked; a
    missing file (`missing` says why), bad JSON or another format is a ValueError that starts
    with `where`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{where}: {missing}")
    manifest = read_json_object(path, kind, max_bytes)
    if (manifest.get("format"), manifest.get("version")) != (fmt, version):
        raise ValueError(f"{where}: not a {fmt} {noun} of version {version}")
    return manifest
