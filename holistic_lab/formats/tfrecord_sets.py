"""TFRecord sets on disk: shard names, the manifest that says which files a set owns, framing checks.

A set written to `NAME.tfrecord` is that file alone or the shards `NAME-00000-of-00004.tfrecord`
beside it, plus a manifest `NAME.tfrecord.json` naming each file with its record count and
byte size. `install_set` puts a set in place once all its files are finished (written in a
temporary folder beside it), the manifest last; a failed write never reaches it, so the
previous set stays whole. It then deletes only files the old manifest names, with the set's
exact file names and still of the size it gave them, so a user's `NAME-v2-of-thesis.tfrecord`
(or a shard the user has changed since) is never touched. Reading goes by the manifest when there is one and refuses a file whose size
changed since; sets written before manifests existed are found by the exact shard pattern.

TF's reader takes a file cut inside a record's 12-byte header (length uint64, masked crc32c of
the length) for a clean end of file, so `check_framing` walks the headers itself and refuses a
short header, or a record (data plus its 4-byte crc) that runs past the end, by record index.
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from ..files import atomic_write, display_path

MANIFEST_FORMAT = "holistic_lab.tfrecord_set"
MANIFEST_VERSION = 1
_HEADER_BYTES = 12
_FOOTER_BYTES = 4


def manifest_path(path) -> Path:
    """`NAME.tfrecord.json` beside `NAME.tfrecord`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def shard_paths(path, num_shards: int) -> list[Path]:
    """`path` itself for one shard, else `stem-00000-of-0000N.suffix` beside it."""
    path = Path(path)
    if num_shards == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i:05d}-of-{num_shards:05d}{path.suffix}") for i in range(num_shards)]


def _shard_pattern(path: Path) -> re.Pattern:
    return re.compile(re.escape(path.stem) + r"-(\d{5})-of-(\d{5})" + re.escape(path.suffix))


def is_set_file_name(path, name: str) -> bool:
    """Is `name` the set's own file name or one of its shard names (exactly, 5 digits each)?"""
    path = Path(path)
    return name == path.name or _shard_pattern(path).fullmatch(name) is not None


def other_set_owning(file, path) -> Path | None:
    """A set other than `path` whose manifest names `file`: the single-file set `file` itself,
    or `NAME.tfrecord` when `file` is named like its shard `NAME-00000-of-00002.tfrecord`; else None."""
    file, path = Path(file), Path(path)
    shard_of = re.fullmatch(r"(.+)-\d{5}-of-\d{5}", file.stem)
    candidates = [file] + ([file.with_name(shard_of.group(1) + file.suffix)] if shard_of else [])
    for candidate in candidates:
        try:
            if candidate != path and file in manifest_files(candidate):
                return candidate
        except ValueError:  # a file there that is not a manifest of ours names nothing
            continue
    return None


def read_manifest(path) -> list[dict] | None:
    """The manifest's file entries ({"name", "records", "bytes"}), None if there is no manifest;
    a file there that is not a manifest of ours, or names files outside the set, is a ValueError."""
    path = Path(path)
    manifest = manifest_path(path)
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data["files"] if data.get("format") == MANIFEST_FORMAT else None
        names = [entry["name"] for entry in entries]
        valid = (all(isinstance(n, str) and is_set_file_name(path, n) for n in names) and len(set(names)) == len(names)
                 and all(isinstance(entry[key], int) for entry in entries for key in ("records", "bytes")))
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ValueError(f"{display_path(manifest)} is not a TFRecord set manifest of holistic-lab (or names files "
                         f"outside the set {display_path(path.name)}); move it away or write the set with overwrite")
    return entries


def write_manifest(path, files: list[Path], record_counts: list[int]) -> Path:
    """Write the manifest of the set `path` (after its files are in place)."""
    entries = [{"name": Path(file).name, "records": int(count), "bytes": Path(file).stat().st_size}
               for file, count in zip(files, record_counts)]
    text = json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": entries,
                       "records": sum(record_counts)}, indent=1)
    return atomic_write(manifest_path(path), lambda temporary: temporary.write_text(text, encoding="utf-8"))


def manifest_files(path) -> list[Path]:
    """The files the set's manifest names (empty if there is no manifest)."""
    path = Path(path)
    return [path.with_name(entry["name"]) for entry in read_manifest(path) or []]


def install_set(path, finished: list[Path], record_counts: list[int]) -> list[Path]:
    """Move the `finished` files (complete, in a temporary folder on the same file system) onto
    the set's names beside `path`, write the manifest last, then delete the previous set's files
    that this one does not use and that still have the size its manifest gave them. Returns the set's files."""
    path = Path(path)
    try:
        previous = read_manifest(path) or []
    except ValueError:  # a file of someone else's at the manifest's name, replaced with overwrite
        previous = []
    files = [path.with_name(Path(file).name) for file in finished]
    for file, target in zip(finished, files):
        os.replace(file, target)
    write_manifest(path, files, record_counts)
    for entry in previous:
        old = path.with_name(entry["name"])
        if old not in files and old.is_file() and old.stat().st_size == entry["bytes"]:
            old.unlink()
    return files


def set_files(path) -> list[Path]:
    """The files of the set `path`: by its manifest (each checked to exist with its written size),
    else the file itself, else its shards by the exact pattern (all of one set)."""
    path = Path(path)
    entries = read_manifest(path)
    if entries is not None:
        files = []
        for entry in entries:
            file = path.with_name(entry["name"])
            size = file.stat().st_size if file.is_file() else None
            if size != entry["bytes"]:
                found = "missing" if size is None else f"{size} bytes"
                raise ValueError(f"{display_path(file)}: {found}, but the set's manifest "
                                 f"{display_path(manifest_path(path).name)} says {entry['bytes']}: changed since "
                                 "the set was written; write the set again")
            files.append(file)
        return files
    if path.is_file():
        return [path]
    pattern = _shard_pattern(path)
    shards = sorted(p for p in path.parent.glob(f"{path.stem}-*-of-*{path.suffix}") if pattern.fullmatch(p.name))
    if not shards:
        raise ValueError(f"TFRecord not found: {display_path(path)} (nor shards "
                         f"{display_path(path.stem)}-NNNNN-of-NNNNN{display_path(path.suffix)})")
    totals = {pattern.fullmatch(p.name).group(2) for p in shards}
    if len(totals) > 1:
        raise ValueError(f"{display_path(path)}: shards of different sets (-of-{', -of-'.join(sorted(totals))}) are "
                         f"mixed: {', '.join(display_path(p.name) for p in shards)}; rewrite the set or delete the "
                         "stale shards")
    return shards


def check_framing(file) -> int:
    """Number of records in `file`, walking the record headers; a file that ends inside a
    record (its header, data or crc) is a ValueError naming the file and the record's index.
    The crcs themselves are checked by TF's reader."""
    file = Path(file)
    size = file.stat().st_size
    offset, index = 0, 0
    with open(file, "rb") as fh:
        while offset < size:
            header = fh.read(_HEADER_BYTES)
            if len(header) < _HEADER_BYTES:
                raise ValueError(f"{display_path(file)}: record {index} is truncated or corrupt: the file ends "
                                 f"inside its {_HEADER_BYTES}-byte header ({len(header)} bytes left)")
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + _HEADER_BYTES + length + _FOOTER_BYTES
            if end > size:
                raise ValueError(f"{display_path(file)}: record {index} is truncated or corrupt: it says "
                                 f"{length} bytes, but the file ends {size - offset - _HEADER_BYTES} bytes after "
                                 "its header")
            offset = fh.seek(end)
            index += 1
    return index
