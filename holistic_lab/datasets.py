"""Data: the sample portraits in data_samples/, and the checksummed fixture packs of real data.

`data_samples/` holds two public-domain portraits that installed packages also carry
(scikit-image's astronaut, matplotlib's grace_hopper) and `teacher_labels.npz`, made by
`holistic-lab label data_samples --out data_samples/teacher_labels.npz`.
The fixture packs (below) hold small human-annotated sets in seven formats (mmpose), gesture
crops and photographs (hagrid, hagrid_frames), clips of people (videos) and faces with 68
points (dlib_faces), each read by a loader here that checks what it returns.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import sha256_file
from .images import load_rgb
from .result import HolisticResult, load_results

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data_samples"
SAMPLE_FILES = {"astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg"}
SAMPLE_LABELS = "teacher_labels.npz"


def sample_names() -> tuple[str, ...]:
    return tuple(SAMPLE_FILES)


def sample_path(name: str) -> Path:
    if name not in SAMPLE_FILES:
        raise ValueError(f"unknown sample {name!r}; expected one of {sample_names()}")
    path = SAMPLES_DIR / SAMPLE_FILES[name]
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: data_samples/ ships with the repository (run from a clone)")
    return path


def sample_image(name: str) -> np.ndarray:
    """One sample portrait as uint8 RGB."""
    return load_rgb(sample_path(name))


def sample_labels(name: str) -> HolisticResult:
    """The teacher's (MediaPipe Holistic's) labels for one sample portrait."""
    file_name = sample_path(name).name
    names, results = load_results(SAMPLES_DIR / SAMPLE_LABELS)
    by_file = {Path(n).name: r for n, r in zip(names, results)}
    if file_name not in by_file:
        raise RuntimeError(f"{SAMPLE_LABELS} has no labels for {file_name}; regenerate it (see data_samples/README.md)")
    return by_file[file_name]


# --- The fixture packs: real data through a checksummed registry -------------------------
# Five packs, each a folder with a README (source, licence, URLs) and SHA256SUMS:
#   mmpose         small human-annotated test sets from the MMPose repository (seven formats)
#   hagrid         HaGRID hand-gesture crops, 13 classes x 200
#   hagrid_frames  40 full HaGRID photographs (10 each of call, four, none, rock)
#   videos         5 clips of people (two with per-frame landmarks computed by TF.js models)
#   dlib_faces     9 photographs with 43 faces, 68 iBUG points each (imglab XML)
# Every file is pinned by SHA-256 in fixtures_registry[_<pack>].txt (made from the pack's
# SHA256SUMS with `registry_lines`). A local folder is read without network and checked
# against the same checksums; without one, pooch downloads the public URLs into its cache
# and checks them. `data_dir` says where the local folders are.
MMPOSE = "mmpose"
_REGISTRY_DIR = Path(__file__).resolve().parent
_GITHUB_RAW = "https://raw.githubusercontent.com/"
_TFJS = "tensorflow/tfjs-models/18a73420e555a3c1948209ebfa807c7086c7ff0c/"
_MEDIAPIPE_SAMPLES = "google-ai-edge/mediapipe-samples/ece8a1f99726a364509be9d07835a69ef65d3e35/examples/"


@dataclass(frozen=True)
class FixturePack:
    """One fixture pack: its files are `base_url + sources.get(file, file)`, their checksums
    in `registry_file`."""
    name: str
    base_url: str
    registry_file: Path
    sources: dict = field(default_factory=dict)

    def url(self, file: str) -> str:
        return self.base_url + self.sources.get(file, file)


FIXTURE_PACKS = {pack.name: pack for pack in (
    FixturePack(MMPOSE, _GITHUB_RAW + "open-mmlab/mmpose/759b39c13fea6ba094afc1fa932f51dc1b11cbf9/tests/data/",
                _REGISTRY_DIR / "fixtures_registry.txt"),
    FixturePack("hagrid", _GITHUB_RAW + "Shadowfax221/553.806_Capstone_HandGesture/"
                "a7825411c5103d2e86575d5f7ce39b272e0cb83f/datasets/dataset_selected/",
                _REGISTRY_DIR / "fixtures_registry_hagrid.txt"),
    FixturePack("hagrid_frames", _GITHUB_RAW + "google-ai-edge/mediapipe/85c0cdc7d70653888903c88df45962b764296342/"
                "mediapipe/model_maker/python/vision/gesture_recognizer/testdata/raw_data/",
                _REGISTRY_DIR / "fixtures_registry_hagrid_frames.txt"),
    # Three source folders in two repositories; the two MediaPipe clips are both test_video.mp4 there.
    FixturePack("videos", _GITHUB_RAW, _REGISTRY_DIR / "fixtures_registry_videos.txt", {
        "gesture_face_hands.mp4": _MEDIAPIPE_SAMPLES + "gesture_recognizer/android/app/src/androidTest/assets/test_video.mp4",
        "hand.mp4": _MEDIAPIPE_SAMPLES + "hand_landmarker/android/app/src/androidTest/assets/test_video.mp4",
        **{f: _TFJS + "pose-detection/test_data/" + f for f in ("pose_squats.mp4", "pose_squats.full.json", "pose_1.mp4")},
        **{f: _TFJS + "hand-pose-detection/test_data/" + f for f in ("asl_hand.25fps.mp4", "asl_hand.full.json")},
    }),
    FixturePack("dlib_faces", _GITHUB_RAW + "davisking/dlib/3d40bf5790ca9073c160cebb898800d9f33e12ab/examples/faces/",
                _REGISTRY_DIR / "fixtures_registry_dlib_faces.txt"),
)}
FIXTURES_BASE_URL = FIXTURE_PACKS[MMPOSE].base_url
FIXTURES_REGISTRY = FIXTURE_PACKS[MMPOSE].registry_file
DATA_ENV = "HOLISTIC_LAB_DATA"
FIXTURES_ENV = "HOLISTIC_LAB_FIXTURES"
DEFAULT_FIXTURES_DIR = SAMPLES_DIR.parent.parent / "shared" / "fixtures"
DEFAULT_DATA_DIR = DEFAULT_FIXTURES_DIR / MMPOSE


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


def _pack(pack: str) -> FixturePack:
    if pack not in FIXTURE_PACKS:
        raise ValueError(f"unknown fixture pack {pack!r}; expected one of {tuple(FIXTURE_PACKS)}")
    return FIXTURE_PACKS[pack]


@functools.lru_cache(maxsize=None)
def fixture_registry(pack: str = MMPOSE) -> dict[str, str]:
    """File name (relative to the pack's folder) -> SHA-256."""
    pairs = (line.split() for line in _pack(pack).registry_file.read_text().splitlines() if line.strip())
    return {name: digest for name, digest in pairs}


def data_dir(folder=None, pack: str = MMPOSE) -> Path | None:
    """The local folder of one fixture pack; None means download by URL. The first that applies:

    the `folder` argument            that pack's own folder;
    $HOLISTIC_LAB_DATA, pack mmpose  that folder (as before the other packs existed);
    $HOLISTIC_LAB_FIXTURES           the folder holding the packs: <it>/<pack>;
    $HOLISTIC_LAB_DATA, other packs  the mmpose folder's siblings: <it>/../<pack>;
    ../shared/fixtures/<pack>        beside the repository, if it exists.
    A folder named by a variable must hold the pack: a missing file there is an error, never
    a download.
    """
    _pack(pack)
    if folder is not None:
        return Path(folder)
    if pack == MMPOSE and os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    if os.environ.get(FIXTURES_ENV):
        return Path(os.environ[FIXTURES_ENV]) / pack
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).parent / pack
    default = DEFAULT_DATA_DIR if pack == MMPOSE else DEFAULT_FIXTURES_DIR / pack
    return default if default.is_dir() else None


def _folder_source(folder, pack: str) -> str:
    if folder is not None:
        return "the folder argument"
    if pack == MMPOSE and os.environ.get(DATA_ENV):
        return f"${DATA_ENV}"
    if os.environ.get(FIXTURES_ENV):
        return f"${FIXTURES_ENV}"
    return f"the parent of ${DATA_ENV}" if os.environ.get(DATA_ENV) else "the folder beside the repository"


@functools.lru_cache(maxsize=None)
def _verified(path: Path, size: int, mtime_ns: int, expected: str) -> bool:
    return sha256_file(path) == expected


def _offline_help(pack: str) -> str:
    spec = _pack(pack)
    where = (f"set {DATA_ENV} to it" if pack == MMPOSE
             else f"set {FIXTURES_ENV} to the folder that holds it as {pack}/")
    return (f"offline, copy the fixture pack (the files listed in holistic_lab/{spec.registry_file.name}, "
            f"from {spec.base_url}) into a folder and {where}, or place it at "
            f"../shared/fixtures/{pack} beside the repository")


OFFLINE_HELP = _offline_help(MMPOSE)


def _cache_dir() -> Path:
    import pooch

    return Path(pooch.os_cache("holistic-lab"))


def _pack_cache_dir(pack: str) -> Path:
    # The mmpose pack has lived at the cache's root since before the other packs.
    return _cache_dir() if pack == MMPOSE else _cache_dir() / pack


def _download(name: str, pack: str = MMPOSE) -> Path:
    """Fetch one registered file into pooch's cache (once), checked against its SHA-256."""
    import pooch

    spec = _pack(pack)
    registry = fixture_registry(pack)
    fetcher = pooch.create(path=_pack_cache_dir(pack), base_url=spec.base_url, registry=registry,
                           urls={file: spec.url(file) for file in registry})
    try:
        return Path(fetcher.fetch(name))
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise RuntimeError(f"cannot download fixture {name} from {spec.url(name)} ({type(exc).__name__}); "
                           f"{_offline_help(pack)}") from exc


def fixture_folder(folder=None, pack: str = MMPOSE) -> Path:
    """One whole fixture pack as a local folder, for code that takes a folder.

    The local folder (see `data_dir`) when there is one; else every registered file
    downloaded once into pooch's cache (checksummed) and that cache folder. A named folder
    that does not exist is a ValueError; no folder and no network a RuntimeError that says
    what to do offline.
    """
    root = data_dir(folder, pack)
    if root is not None:
        if not root.is_dir():
            raise ValueError(f"fixture folder {root} (from {_folder_source(folder, pack)}) does not exist; "
                             f"expected the {pack} fixture pack")
        return root
    for name in fixture_registry(pack):
        _download(name, pack)
    return _pack_cache_dir(pack)


def fixture_path(name: str, folder=None, pack: str = MMPOSE) -> Path:
    """Local path of one file of a fixture pack, checked against its registered SHA-256.

    `name` is relative to the pack's folder ("300w/indoor_020.png"; pack="hagrid":
    "call/<id>.jpg"). With a local folder the file is read from there (never downloaded);
    a missing file or a checksum mismatch is a ValueError naming it. Without one, pooch
    fetches the public URL into its cache and checks the same checksum.
    """
    registry = fixture_registry(pack)
    if name not in registry:
        raise ValueError(f"{name!r} is not in the fixture registry ({_pack(pack).registry_file.name}, the {pack} pack)")
    root = data_dir(folder, pack)
    if root is None:
        return _download(name, pack)
    path = root / name
    if not path.is_file():
        hint = (f"set {DATA_ENV} to the mmpose fixture folder" if pack == MMPOSE
                else f"set {FIXTURES_ENV} to the folder that holds {pack}/")
        raise ValueError(f"fixture {name} not found in {root} (from {_folder_source(folder, pack)}; {hint})")
    stat = path.stat()
    if not _verified(path, stat.st_size, stat.st_mtime_ns, registry[name]):
        raise ValueError(f"fixture {path} is corrupt: its SHA-256 is {sha256_file(path)}, expected {registry[name]}")
    return path


def fixture_image(name: str, folder=None, pack: str = MMPOSE) -> np.ndarray:
    """One fixture image by its pack path (e.g. "coco/000000000785.jpg"), checksum-checked, as uint8 RGB."""
    return load_rgb(fixture_path(name, folder, pack))


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


# --- The other packs: gesture crops and frames, videos, dlib's faces --------------------
# The gesture names of the fine-tuning job API for the HaGRID classes that have one (the
# hagrid pack's README); HaGRID has no pinch, and call, dislike, mute, rock, stop_inverted
# and none have no job-API name.
HAGRID_TO_GESTURE = {"palm": "open", "fist": "closed", "one": "point", "peace": "victory",
                     "like": "thumb_up", "ok": "ok", "stop": "stop"}
HAGRID_CLASSES = ("call", "dislike", "fist", "like", "mute", "none", "ok", "one", "palm", "peace", "rock",
                  "stop", "stop_inverted")
HAGRID_FRAME_CLASSES = ("call", "four", "none", "rock")
# Clips with per-frame landmarks (computed by TF.js models, not human labels): file, points per frame.
VIDEO_LANDMARKS = {"pose_squats.mp4": ("pose_squats.full.json", 33), "asl_hand.25fps.mp4": ("asl_hand.full.json", 21)}
DLIB_FACE_FILES = {"training": "training_with_face_landmarks.xml", "testing": "testing_with_face_landmarks.xml"}


def _labelled_by_folder(pack: str, classes: tuple[str, ...], folder) -> list[tuple[Path, str]]:
    """(checked path, label) for every image of a pack whose first folder is the class label."""
    items = []
    for name in sorted(fixture_registry(pack)):
        label = Path(name).parts[0]
        assert label in classes, f"{pack} registry: {name} is not in one of the class folders {classes}"
        items.append((fixture_path(name, folder, pack), label))
    return items


def hagrid_crops(folder=None) -> list[tuple[Path, str]]:
    """The hagrid pack's 2,600 tight hand crops as (path, HaGRID class), sorted, each checksum-checked.
    `HAGRID_TO_GESTURE` maps a class to the job API's gesture name where there is one."""
    return _labelled_by_folder("hagrid", HAGRID_CLASSES, folder)


def hagrid_frames(folder=None) -> list[tuple[Path, str]]:
    """The hagrid_frames pack's 40 full photographs as (path, class: call, four, none or rock)."""
    return _labelled_by_folder("hagrid_frames", HAGRID_FRAME_CLASSES, folder)


def fixture_videos(folder=None) -> dict[str, Path]:
    """The videos pack's clips: file name -> checked path (their frames: `images.iter_video_frames`)."""
    return {name: fixture_path(name, folder, "videos") for name in sorted(fixture_registry("videos"))
            if name.endswith(".mp4")}


def video_landmarks(video: str, folder=None) -> np.ndarray:
    """(frames, points, 3) float32 pixel x, y, z per frame of a clip that has them (`VIDEO_LANDMARKS`):
    33 BlazePose points for pose_squats.mp4, 21 hand points for asl_hand.25fps.mp4. Model output."""
    import json

    if video not in VIDEO_LANDMARKS:
        raise ValueError(f"no landmarks for video {video!r}; expected one of {tuple(VIDEO_LANDMARKS)}")
    json_name, points = VIDEO_LANDMARKS[video]
    path = fixture_path(json_name, folder, "videos")
    try:
        xyz = np.asarray(json.loads(path.read_text()), np.float32)
    except ValueError as exc:  # not JSON, or frames of different lengths
        raise ValueError(f"{path}: expected frames of {points} [x, y, z] points ({exc})") from None
    if xyz.ndim != 3 or xyz.shape[1:] != (points, 3) or not np.isfinite(xyz).all():
        raise ValueError(f"{path}: expected (frames, {points}, 3) finite numbers, got shape {xyz.shape}")
    return xyz


def load_dlib_faces(split: str = "all", folder=None) -> FixtureSet:
    """dlib's faces (68 iBUG points each) as Samples in the 543 layout, kind "face":
    split "training" (18 faces in 4 images), "testing" (25 in 5) or "all". The XML says the
    points come from dlib's 68-point shape predictor, so treat them as reference labels of
    that quality. The XML and every image are checksum-checked first."""
    from .formats.dlib_faces import load_imglab_faces

    splits = tuple(DLIB_FACE_FILES) if split == "all" else (split,)
    if not set(splits) <= set(DLIB_FACE_FILES):
        raise ValueError(f"unknown dlib_faces split {split!r}; expected 'all' or one of {tuple(DLIB_FACE_FILES)}")
    samples = []
    for name in splits:
        xml_path = fixture_path(DLIB_FACE_FILES[name], folder, "dlib_faces")
        first_image_id = max((s.image_id for s in samples), default=-1) + 1  # ids unique across the two files
        for sample in load_imglab_faces(xml_path):
            sample.image_path = str(fixture_path(sample.extras["image"]["file_name"], folder, "dlib_faces"))
            sample.ann_id, sample.image_id = len(samples), first_image_id + sample.image_id
            samples.append(sample)
    return FixtureSet("dlib_faces" if split == "all" else f"dlib_faces_{split}", "face", samples)
