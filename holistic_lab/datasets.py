"""Data: the sample portraits in data_samples/, and the checksummed fixture pack of real annotations.

`data_samples/` holds two public-domain portraits that installed packages also carry
(scikit-image's astronaut, matplotlib's grace_hopper) and `teacher_labels.npz`, made by
`holistic-lab label data_samples --out data_samples/teacher_labels.npz`.
The fixture pack (below) holds small human-annotated sets in seven formats.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import load_rgb
from .result import HolisticResult, load_results

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data_samples"
SAMPLE_FILES = {"astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg"}
SAMPLE_LABELS = "teacher_labels.npz"


def sample_names() -> tuple[str, ...]:
    return tuple(SAMPLE_FILES)


def _sample_file(name: str) -> Path:
    if name not in SAMPLE_FILES:
        raise ValueError(f"unknown sample {name!r}; expected one of {sample_names()}")
    path = SAMPLES_DIR / SAMPLE_FILES[name]
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: data_samples/ ships with the repository (run from a clone)")
    return path


def sample_image(name: str) -> np.ndarray:
    """One sample portrait as uint8 RGB."""
    return load_rgb(_sample_file(name))


def sample_labels(name: str) -> HolisticResult:
    """The teacher's (MediaPipe Holistic's) labels for one sample portrait."""
    file_name = _sample_file(name).name
    names, results = load_results(SAMPLES_DIR / SAMPLE_LABELS)
    by_file = {Path(n).name: r for n, r in zip(names, results)}
    if file_name not in by_file:
        raise RuntimeError(f"{SAMPLE_LABELS} has no labels for {file_name}; regenerate it (see data_samples/README.md)")
    return by_file[file_name]


# --- The fixture pack: real human annotations through a checksummed registry -----------
# Small test sets from the public MMPose repository (tests/data, Apache-2.0). Every file is
# pinned by SHA-256 in fixtures_registry.txt (made from the pack's SHA256SUMS with
# `registry_lines`). A local folder (argument or HOLISTIC_LAB_DATA; CI and these machines
# use ../shared/fixtures/mmpose) is read without network and checked against the same
# checksums; without one, pooch downloads the public URLs into its cache and checks them.
FIXTURES_BASE_URL = ("https://raw.githubusercontent.com/open-mmlab/mmpose/"
                     "759b39c13fea6ba094afc1fa932f51dc1b11cbf9/tests/data/")
FIXTURES_REGISTRY = Path(__file__).resolve().parent / "fixtures_registry.txt"
DATA_ENV = "HOLISTIC_LAB_DATA"
DEFAULT_DATA_DIR = SAMPLES_DIR.parent.parent / "shared" / "fixtures" / "mmpose"


def registry_lines(sha256sums_text: str) -> list[str]:
    """`path sha256` registry lines (pooch's format) from `sha256sum` output (`sha256  ./path`)."""
    lines = []
    for number, line in enumerate(sha256sums_text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name:
            raise ValueError(f"SHA256SUMS line {number}: expected '<64 hex digits>  <path>', got {line!r}")
        lines.append(f"{name.removeprefix('./')} {digest}")
    return lines


@functools.lru_cache(maxsize=1)
def fixture_registry() -> dict[str, str]:
    """File name (relative to the pack) -> SHA-256."""
    pairs = (line.split() for line in FIXTURES_REGISTRY.read_text().splitlines() if line.strip())
    return {name: digest for name, digest in pairs}


def data_dir(folder=None) -> Path | None:
    """The local fixture folder: `folder`, else $HOLISTIC_LAB_DATA, else ../shared/fixtures/mmpose
    beside the repository if it exists; None means download by URL."""
    if folder is not None:
        return Path(folder)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _verified(path: Path, size: int, mtime_ns: int, expected: str) -> bool:
    return _sha256(path) == expected


OFFLINE_HELP = (f"offline, copy the fixture pack (the files listed in holistic_lab/{FIXTURES_REGISTRY.name}, "
                f"from {FIXTURES_BASE_URL}) into a folder and set {DATA_ENV} to it, or place it at "
                f"../shared/fixtures/mmpose beside the repository")


def _cache_dir() -> Path:
    import pooch

    return Path(pooch.os_cache("holistic-lab"))


def _download(name: str) -> Path:
    """Fetch one registered file into pooch's cache (once), checked against its SHA-256."""
    import pooch

    fetcher = pooch.create(path=_cache_dir(), base_url=FIXTURES_BASE_URL, registry=fixture_registry())
    try:
        return Path(fetcher.fetch(name))
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise RuntimeError(f"cannot download fixture {name} from {FIXTURES_BASE_URL} ({type(exc).__name__}); "
                           f"{OFFLINE_HELP}") from exc


def fixture_folder(folder=None) -> Path:
    """The whole fixture pack as a local folder, for code that takes a folder.

    The local folder (`folder`, $HOLISTIC_LAB_DATA, or ../shared/fixtures/mmpose beside the
    repository) when there is one; else every registered file downloaded once into pooch's
    cache (checksummed) and that cache folder. A named folder that does not exist is a
    ValueError; no folder and no network a RuntimeError that says what to do offline.
    """
    root = data_dir(folder)
    if root is not None:
        if not root.is_dir():
            source = "the folder argument" if folder is not None else f"${DATA_ENV}"
            raise ValueError(f"fixture folder {root} (from {source}) does not exist; expected the mmpose fixture pack")
        return root
    for name in fixture_registry():
        _download(name)
    return _cache_dir()


def fixture_path(name: str, folder=None) -> Path:
    """Local path of one fixture file, checked against its registered SHA-256.

    With a local folder the file is read from there (never downloaded); a missing file or
    a checksum mismatch is a ValueError naming it. Without one, pooch fetches the public
    URL into its cache and checks the same checksum.
    """
    registry = fixture_registry()
    if name not in registry:
        raise ValueError(f"{name!r} is not in the fixture registry ({FIXTURES_REGISTRY.name})")
    root = data_dir(folder)
    if root is None:
        return _download(name)
    path = root / name
    if not path.is_file():
        raise ValueError(f"fixture {name} not found in {root} (set {DATA_ENV} to the mmpose fixture folder)")
    stat = path.stat()
    if not _verified(path, stat.st_size, stat.st_mtime_ns, registry[name]):
        raise ValueError(f"fixture {path} is corrupt: its SHA-256 is {_sha256(path)}, expected {registry[name]}")
    return path


def fixture_image(name: str, folder=None) -> np.ndarray:
    """One fixture image by its pack path (e.g. "coco/000000000785.jpg"), checksum-checked, as uint8 RGB."""
    return load_rgb(fixture_path(name, folder))


@dataclass(frozen=True)
class FixtureSpec:
    """One annotated fixture set: its JSON, its layout (or a per-image layout choice), and
    `kind` (wholebody, body, face, hand), which says what `metrics.evaluate` measures."""
    annotations: str
    kind: str
    layout: object
    image_root: str = ""
    note: str = ""


def _panoptic_side(image: dict):
    from .formats.coco_keypoints import HAND21_LEFT, HAND21_RIGHT

    return HAND21_LEFT if Path(image.get("file_name", "")).stem.endswith("_l") else HAND21_RIGHT


@functools.lru_cache(maxsize=1)
def fixture_specs() -> dict[str, FixtureSpec]:
    from .formats import coco_keypoints as ck
    from .formats.coco_wholebody import WHOLEBODY

    return {
        "coco_wholebody": FixtureSpec("coco/test_coco_wholebody.json", "wholebody", WHOLEBODY,
                                      note="COCO val2017, 133 points, 14 people in 4 images"),
        "coco": FixtureSpec("coco/test_coco.json", "body", ck.COCO17, note="COCO-17 body points"),
        "aic": FixtureSpec("aic/test_aic.json", "body", ck.AIC14, note="AI Challenger, 14 body points, crowded"),
        "posetrack18": FixtureSpec("posetrack18/annotations/test_posetrack18_val.json", "body", ck.POSETRACK17,
                                   image_root="posetrack18", note="PoseTrack18 video frames"),
        "300w": FixtureSpec("300w/test_300w.json", "face", ck.FACE68, note="300-W, 68 iBUG face points"),
        # FreiHAND annotates every hand with the right-hand MANO model.
        "freihand": FixtureSpec("freihand/test_freihand.json", "hand", ck.HAND21_RIGHT,
                                note="FreiHAND 224x224 hand crops"),
        "panoptic": FixtureSpec("panoptic/test_panoptic.json", "hand", _panoptic_side,
                                note="CMU Panoptic hands; _l/_r images are the left/right hand"),
    }


def fixture_names() -> tuple[str, ...]:
    return tuple(fixture_specs())


@dataclass
class FixtureSet:
    """The Samples of one fixture set, with its name and kind (wholebody, body, face, hand)."""
    name: str
    kind: str
    samples: list = field(repr=False)
    skipped: list = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def by_image(self) -> dict[str, list]:
        """image path -> the Samples (people, faces or hands) annotated in it, in file order."""
        groups: dict[str, list] = {}
        for sample in self.samples:
            groups.setdefault(sample.image_path, []).append(sample)
        return groups


def load_fixture(name: str, folder=None, strict: bool = True) -> FixtureSet:
    """One fixture set as Samples in the 543 layout; its JSON and every image it names are
    checked against the registry first."""
    from .formats.coco_keypoints import load_coco_keypoints

    specs = fixture_specs()
    if name not in specs:
        raise ValueError(f"unknown fixture set {name!r}; expected one of {fixture_names()}")
    spec = specs[name]
    json_path = fixture_path(spec.annotations, folder)
    samples = load_coco_keypoints(json_path, spec.layout, strict=strict)
    root = spec.image_root or str(Path(spec.annotations).parent)
    for sample in samples:
        relative = Path(root) / sample.extras["image"]["file_name"]
        sample.image_path = str(fixture_path(relative.as_posix(), folder))
    return FixtureSet(name, spec.kind, list(samples), samples.skipped)
