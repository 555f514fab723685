"""Files on disk: writing one atomically, and naming any path in a message.

Every writer of results, labels, records, images and models goes through `atomic_write`.

`atomic_write` writes into a temporary folder beside the target and then renames the
finished file onto it, so an interrupted or failed write never leaves a half-written
file under the final name and keeps whatever file was there before. The temporary file
keeps the target's name (some writers, e.g. Keras, choose the format by the suffix).
A file name may hold bytes that are not UTF-8 (Python keeps them as surrogate escapes,
which a UTF-8 terminal or log cannot print); `display_path` shows them as backslash escapes.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path, write_fn: Callable[[Path], object]) -> Path:
    """Call `write_fn(temporary_path)`, then move that file onto `path`; on any failure the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial-") as folder:
        temporary = Path(folder) / path.name
        write_fn(temporary)
        if not temporary.is_file():
            raise ValueError(f"{path}: the writer produced no file")
        os.replace(temporary, path)
    return path


def display_path(path) -> str:
    """`path` as printable text: bytes that are not UTF-8 appear as `\\xNN` escapes (b"bad\\xff.png" -> "bad\\xff.png")."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
