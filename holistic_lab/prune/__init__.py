"""Chapter 07: structured channel pruning of the opened Holistic models."""
from .cost import LayerLatency, layer_latency, layer_macs, model_latency, model_macs, one_layer_tflite, width_sweep

__all__ = ["LayerLatency", "layer_latency", "layer_macs", "model_latency", "model_macs", "one_layer_tflite", "width_sweep"]
