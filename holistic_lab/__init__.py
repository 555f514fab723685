"""holistic_lab: open, run, fine-tune, shrink and serve MediaPipe Holistic (543 points).

Cheap to import: heavy pieces (mediapipe, TensorFlow) load only in the modules that
need them (teacher, pipeline, convert, ...).
"""
from .result import HolisticResult, load_results, save_results
from .topology import NUM_KEYPOINTS, PARTS

__all__ = ["HolisticResult", "NUM_KEYPOINTS", "PARTS", "load_results", "save_results"]
__version__ = "0.1.0"
