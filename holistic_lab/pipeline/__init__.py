"""MediaPipe Holistic's ROI cascade in Python over swappable models (see holistic.py)."""
from .holistic import STAGE_MODELS, HolisticPipeline

__all__ = ["HolisticPipeline", "STAGE_MODELS"]
