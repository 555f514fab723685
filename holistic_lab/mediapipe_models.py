"""Where the Holistic .tflite files live inside the mediapipe==0.10.21 wheel.

These seven files are the whole of MediaPipe Holistic at model_complexity=1 (see
mediapipe/modules/holistic_landmark/holistic_landmark_cpu.pbtxt). Later mediapipe
releases ship no models and download .task bundles, which is why the version is pinned.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

HOLISTIC_MODELS: dict[str, str] = {
    "pose_detection": "pose_detection/pose_detection.tflite",
    "pose_landmark_full": "pose_landmark/pose_landmark_full.tflite",
    "face_detection_short_range": "face_detection/face_detection_short_range.tflite",
    "face_landmark": "face_landmark/face_landmark.tflite",
    "palm_detection_full": "palm_detection/palm_detection_full.tflite",
    "hand_landmark_full": "hand_landmark/hand_landmark_full.tflite",
    "hand_recrop": "holistic_landmark/hand_recrop.tflite",
}


def modules_dir() -> Path:
    """The `mediapipe/modules` folder of the installed wheel, found without importing mediapipe."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mediapipe is not installed: pip install mediapipe==0.10.21")
    return Path(list(spec.submodule_search_locations)[0]) / "modules"


def model_path(name: str) -> Path:
    """Path of one shipped Holistic model by short name (a key of HOLISTIC_MODELS)."""
    if name not in HOLISTIC_MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(HOLISTIC_MODELS)}")
    path = modules_dir() / HOLISTIC_MODELS[name]
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: only mediapipe==0.10.21 (and older) ships the Holistic models")
    return path


def resolve_model(model) -> Path:
    """A shipped model's short name (e.g. 'hand_landmark_full') or a path to a .tflite file -> its path."""
    if str(model) in HOLISTIC_MODELS:
        return model_path(str(model))
    path = Path(model)
    if path.suffix != ".tflite" or not path.is_file():
        raise ValueError(f"{str(model)!r} is neither a shipped model name ({', '.join(HOLISTIC_MODELS)}) "
                         "nor an existing .tflite file")
    return path


def installed_versions() -> dict[str, str]:
    """Versions of the packages the course is pinned to, as installed."""
    from importlib.metadata import version

    packages = ("mediapipe", "tensorflow", "keras", "numpy", "protobuf", "albumentations", "opencv-contrib-python")
    return {package: version(package) for package in packages}
