"""Chapter 07: structured channel pruning of the opened Holistic models."""
from .recover import DistillRun, distill, distillation_loss, recovery_crops

__all__ = ["DistillRun", "distill", "distillation_loss", "recovery_crops"]
