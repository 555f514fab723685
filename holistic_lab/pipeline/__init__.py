"""MediaPipe Holistic's ROI cascade in Python over swappable models (see holistic.py)."""
from .holistic import HolisticPipeline

__all__ = ["HolisticPipeline"]
