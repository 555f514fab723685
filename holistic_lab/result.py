"""HolisticResult: the 543 keypoints of one person in one image, and how they are stored.

`xyz` is (543, 3) float32: x, y normalised to the image (0..1, MediaPipe's convention),
z in MediaPipe's units (roughly x's scale, relative to the hips for pose, the wrist for
hands, the face centre for the face); every row of an absent part is NaN.
`visibility` is (543,) float32: MediaPipe's visibility for pose points, 1.0 for points
of a present face or hand (those models give none), 0.0 for absent parts.
`gestures` is None unless the pipeline has a gesture model; then it maps each hand to its
(label, score), None for a hand not found. It is not stored in results files.
Many results are stored together in one `.npz` (see `save_results`), marked with
`RESULTS_FORMAT` so a writer can tell its own archives from a user's files.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_write, check_output_file, display_path
from .topology import NUM_KEYPOINTS, PART_NAMES, PARTS

RESULTS_FORMAT = "holistic-lab results 1"
_RESULTS_KEYS = frozenset({"names", "xyz", "visibility", "present", "width", "height"})


@dataclass
class HolisticResult:
    xyz: np.ndarray
    visibility: np.ndarray
    present: dict[str, bool]
    width: int
    height: int
    extras: dict = field(default_factory=dict, repr=False, compare=False)
    # per hand (label, score) or None, when the pipeline has a gesture model; None when it has none
    gestures: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        self.xyz = np.asarray(self.xyz, dtype=np.float32)
        self.visibility = np.asarray(self.visibility, dtype=np.float32)
        if self.xyz.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"xyz must be ({NUM_KEYPOINTS}, 3), got {self.xyz.shape}")
        if self.visibility.shape != (NUM_KEYPOINTS,):
            raise ValueError(f"visibility must be ({NUM_KEYPOINTS},), got {self.visibility.shape}")
        if set(self.present) != set(PART_NAMES):
            raise ValueError(f"present must have exactly the keys {PART_NAMES}, got {sorted(self.present)}")
        self.present = {name: bool(self.present[name]) for name in PART_NAMES}
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")

    @classmethod
    def empty(cls, width: int, height: int) -> "HolisticResult":
        """A result with every part absent (what an image with no person gives)."""
        return cls(
            xyz=np.full((NUM_KEYPOINTS, 3), np.nan, np.float32),
            visibility=np.zeros(NUM_KEYPOINTS, np.float32),
            present={name: False for name in PART_NAMES},
            width=width,
            height=height,
        )

    @classmethod
    def from_parts(cls, parts: dict[str, np.ndarray], width: int, height: int,
                   pose_visibility: np.ndarray | None = None) -> "HolisticResult":
        """Build from per-part (n, 3) normalised arrays; a part missing from `parts` is absent."""
        result = cls.empty(width, height)
        for name, points in parts.items():
            if name not in PARTS:
                raise ValueError(f"unknown part {name!r}; expected one of {PART_NAMES}")
            if points is None:
                continue
            result.set_part(name, points)
        if pose_visibility is not None and result.present["pose"]:
            result.visibility[PARTS["pose"]] = np.asarray(pose_visibility, np.float32)
        return result

    def set_part(self, name: str, points: np.ndarray) -> None:
        """Fill part `name` with (n, 3) normalised points and mark it present."""
        sl = PARTS[name]
        points = np.asarray(points, np.float32)
        if points.shape != (sl.stop - sl.start, 3):
            raise ValueError(f"part {name} needs shape ({sl.stop - sl.start}, 3), got {points.shape}")
        self.xyz[sl] = points
        self.visibility[sl] = 1.0
        self.present[name] = True

    def __getitem__(self, name: str) -> np.ndarray:
        """Part access by name: result["left_hand"] -> (21, 3)."""
        if name not in PARTS:
            raise KeyError(f"unknown part {name!r}; expected one of {PART_NAMES}")
        return self.xyz[PARTS[name]]

    def pixels(self) -> np.ndarray:
        """(543, 2) float32 pixel coordinates (x * width, y * height); NaN for absent parts."""
        return self.xyz[:, :2] * np.array([self.width, self.height], np.float32)

    def mask(self) -> np.ndarray:
        """(543,) bool: True where the point's x, y are known. Human annotations are 2-D:
        their z is NaN, and the point is known all the same."""
        return np.isfinite(self.xyz[:, :2]).all(axis=1)

    def to_array(self) -> np.ndarray:
        """(543, 4) float32 rows of x, y, z, visibility: the flat form models train on."""
        return np.concatenate([self.xyz, self.visibility[:, None]], axis=1)

    @classmethod
    def from_array(cls, array: np.ndarray, width: int, height: int) -> "HolisticResult":
        """Inverse of `to_array`; a part is present when none of its rows is NaN."""
        array = np.asarray(array, np.float32)
        if array.shape != (NUM_KEYPOINTS, 4):
            raise ValueError(f"array must be ({NUM_KEYPOINTS}, 4) rows of x, y, z, visibility; got {array.shape}")
        present = {name: bool(np.isfinite(array[sl, :3]).all()) for name, sl in PARTS.items()}
        return cls(array[:, :3].copy(), np.nan_to_num(array[:, 3]), present, width, height)

    def allclose(self, other: "HolisticResult", atol: float = 1e-6) -> bool:
        return (self.present == other.present and (self.width, self.height) == (other.width, other.height)
                and np.allclose(self.xyz, other.xyz, atol=atol, equal_nan=True))


def is_results_file(path) -> bool:
    """True if `path` is a results `.npz` of this project: marked with RESULTS_FORMAT, or older with all its keys."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            return ("format" in keys and str(data["format"]) == RESULTS_FORMAT) or _RESULTS_KEYS <= keys
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, TypeError, AttributeError):
        return False  # not an .npz at all (np.load returns a plain array for a .npy, no context manager)


def check_results_output(path, inputs=(), overwrite: bool = False, what: str = "output") -> Path:
    """`files.check_output_file` for a results `.npz`: only an earlier results archive is replaced unless `overwrite`."""
    path = check_output_file(path, is_ours=is_results_file, inputs=inputs, overwrite=overwrite,
                             kind="a holistic-lab results .npz", what=what)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{what} {display_path(path)}: a results file must end in .npz")
    return path


def save_results(path, results: list[HolisticResult], names: list[str], overwrite: bool = False,
                 **metadata) -> Path:
    """Write many results to one compressed `.npz`, atomically (`files.atomic_write`).

    Keys: names (N,), xyz (N,543,3), visibility (N,543), present (N,4) in PART_NAMES
    order, width (N,), height (N,), parts, format (RESULTS_FORMAT), plus any extra
    `metadata` arrays (a batch run's `skipped` lines, read back by `load_skipped`).
    An interrupted write leaves the previous file intact; an existing file that is not
    a results archive is refused unless `overwrite`.
    """
    if len(results) != len(names):
        raise ValueError(f"{len(results)} results but {len(names)} names")
    check_results_output(path, overwrite=overwrite)
    arrays = dict(
        names=np.array(names, dtype=str),
        xyz=np.stack([r.xyz for r in results]) if results else np.zeros((0, NUM_KEYPOINTS, 3), np.float32),
        visibility=np.stack([r.visibility for r in results]) if results else np.zeros((0, NUM_KEYPOINTS), np.float32),
        present=np.array([[r.present[p] for p in PART_NAMES] for r in results], bool).reshape(-1, len(PART_NAMES)),
        width=np.array([r.width for r in results], np.int32),
        height=np.array([r.height for r in results], np.int32),
        parts=np.array(PART_NAMES),
        **{k: np.asarray(v) for k, v in metadata.items()},
        format=np.array(RESULTS_FORMAT),
    )

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as fh:  # a file object: np.savez would add ".npz" to a bare name
            np.savez_compressed(fh, **arrays)

    return atomic_write(path, write)


def load_results(path) -> tuple[list[str], list[HolisticResult]]:
    """Read a file written by `save_results`; a corrupt or foreign file raises ValueError naming it."""
    path = Path(path)
    arrays = _read_arrays(path)
    missing = _RESULTS_KEYS - set(arrays)
    if missing:
        raise ValueError(f"{display_path(path)} is not a holistic-lab results file: missing {sorted(missing)}")
    _check_results_arrays(arrays, path)
    parts = tuple(str(p) for p in arrays.get("parts", PART_NAMES))
    names = [str(n) for n in arrays["names"]]
    results = []
    for index, row in enumerate(zip(arrays["xyz"], arrays["visibility"], arrays["present"],
                                    arrays["width"], arrays["height"])):
        xyz, vis, pres, w, h = row
        try:
            results.append(HolisticResult(xyz, vis, dict(zip(parts, map(bool, pres))), int(w), int(h)))
        except ValueError as exc:
            raise ValueError(f"{display_path(path)}: entry {index} ({names[index]}): {exc}") from None
    return names, results


def load_skipped(path) -> list[str]:
    """The inputs a batch run skipped, one line each with the reason, as recorded in its results file
    (`save_results(..., skipped=...)`); empty when it recorded none."""
    return [str(line) for line in _read_arrays(Path(path)).get("skipped", [])]


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`, each one's declared size checked against its stored bytes first:
    a forged header could otherwise ask numpy for terabytes."""
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                _check_declared_size(data.zip, key, path)
            return {key: data[key] for key in data.files}
    except MemoryError:
        raise ValueError(f"cannot read results file {display_path(path)}: an array larger than this machine's "
                         "memory") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read results file {display_path(path)}: {exc}") from exc


def _check_declared_size(archive: zipfile.ZipFile, key: str, path: Path) -> None:
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(fh)
        declared = math.prod(shape) * dtype.itemsize
        if dtype.hasobject or declared != info.file_size - fh.tell():
            raise ValueError(f"array {key!r} declares shape {shape} of {dtype}, which its {info.file_size} stored "
                             "bytes do not hold: the file is corrupt or forged")


def _check_results_arrays(arrays: dict, path: Path) -> None:
    """Shapes and kinds of a results archive's arrays, each refused by key: names (N,), xyz (N, 543, 3),
    visibility (N, 543), present (N, parts), width and height (N,) whole numbers."""
    count = arrays["names"].shape[0] if arrays["names"].ndim == 1 else -1
    parts = arrays.get("parts", np.array(PART_NAMES))
    expected = {"names": ((count,), "US"), "xyz": ((count, NUM_KEYPOINTS, 3), "fiu"),
                "visibility": ((count, NUM_KEYPOINTS), "fiu"), "present": ((count, len(PART_NAMES)), "biu"),
                "width": ((count,), "iu"), "height": ((count,), "iu"), "parts": ((len(PART_NAMES),), "US")}
    for key, (shape, kinds) in expected.items():
        array = arrays.get(key, parts)
        if count < 0 or array.shape != shape or array.dtype.kind not in kinds:
            raise ValueError(f"{display_path(path)}: {key} has shape {array.shape} and dtype {array.dtype}; expected "
                             f"shape {shape} ({'text' if kinds == 'US' else 'numbers'}) for {max(count, 0)} names")
    if sorted(str(p) for p in parts) != sorted(PART_NAMES):
        raise ValueError(f"{display_path(path)}: parts are {[str(p) for p in parts]}; expected {list(PART_NAMES)}")
