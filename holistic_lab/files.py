"""Writing a file atomically: every writer of results, labels, records and models goes through here.

`atomic_write` writes into a temporary folder beside the target and then renames the
finished file onto it, so an interrupted or failed write never leaves a half-written
file under the final name and keeps whatever file was there before. The temporary file
keeps the target's name (some writers, e.g. Keras, choose the format by the suffix).
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
