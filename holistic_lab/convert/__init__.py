"""Opening the Holistic .tflite models: each rebuilt as a trainable Keras model, verified number for number.

    model = tflite_to_keras(model_path("hand_landmark_full"))   # keras.Model, weights as float32
    print(verify(model_path("hand_landmark_full"), model))      # error table vs tf.lite.Interpreter
    outputs = run_keras(model, batch)                           # list, original TFLite output order
    groups = layer_groups(model)                                # backbone and heads, by layer name

One idea per file: `reading` (flatbuffer -> graph, weights decoded), `sparsity` (DENSIFY),
`layers` (the few custom Keras layers), `building` (op -> layer), `groups` (backbone/heads),
`samples` (real crops to check with), `verification` (error against the interpreter, round trip).
"""
from ..native_logs import import_tensorflow

import_tensorflow()  # first, so TensorFlow's native start-up lines are filtered (see native_logs)

from .building import supported_ops, tflite_to_keras  # noqa: E402
from .groups import OUTPUT_MEANINGS, LayerGroup, layer_groups  # noqa: E402
from .reading import TFLiteGraph, UnsupportedOpError, read_tflite  # noqa: E402
from .verification import (TOLERANCE,  # noqa: E402
                           VerificationReport, keras_to_tflite, outputs_in_signature_order, relative_error, run_keras, run_tflite,
                           verify)

__all__ = ["tflite_to_keras", "supported_ops", "read_tflite", "TFLiteGraph", "UnsupportedOpError", "layer_groups",
           "LayerGroup", "OUTPUT_MEANINGS", "verify", "VerificationReport", "TOLERANCE", "relative_error", "run_keras",
           "run_tflite", "keras_to_tflite", "outputs_in_signature_order"]
