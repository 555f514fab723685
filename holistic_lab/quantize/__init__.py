"""Chapter 08: quantized versions of every Holistic stage, made by TensorFlow's own TFLite converter.

    crops = stage_calibration(STAGES)                          # real crops, through the cascade
    quantize_variant("variants/int8", "int8", calibration=crops)            # PRELU kept float
    quantize_variant("variants/int8s", "int8", calibration=crops, selective=True)
    HolisticPipeline.from_variant("variants/int8")

One idea per file, in the order the data flows: `calibration` (each stage's real model inputs),
`modes` (one Keras stage -> .tflite in float32 / float16 / dynamic / int8 / int16x8; reading the ops
back), `selective` (the QuantizationDebugger's per-layer error, the output heads, float denylists),
`variant` (several stages into a variant folder, the CLI's `holistic-lab quantize`), `measure`
(size, latency, memory, output error and accuracy, side by side), `ai_edge` (Google's
ai-edge-quantizer on the same float32 export and crops: the comparison the converter was chosen on).

Importing this package does not load TensorFlow; converting does.
"""
from .calibration import MIN_CROPS, calibration_crops, default_calibration_frames, folder_images, palm_detection_crops
from .modes import FLOAT_BY_DEFAULT, MODES, float_ops, op_dtypes, quantize_model
from .selective import LayerError, layer_errors, output_layers, sensitive_layers
from .variant import quantize_variant, stage_calibration

__all__ = ["MIN_CROPS", "calibration_crops", "palm_detection_crops", "default_calibration_frames", "folder_images", "FLOAT_BY_DEFAULT",
           "MODES", "float_ops", "op_dtypes", "quantize_model", "LayerError", "layer_errors", "output_layers",
           "sensitive_layers", "quantize_variant", "stage_calibration"]
