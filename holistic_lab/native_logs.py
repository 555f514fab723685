"""Keep the native libraries' benign start-up chatter out of notebooks and logs.

TensorFlow, TFLite and MediaPipe's C++ code write straight to file descriptor 2:
absl's "log messages before absl::InitializeLog()" notice, cuDNN/cuFFT/cuBLAS factory
registration on machines without CUDA, "Created TensorFlow Lite XNNPACK delegate",
MediaPipe calculator warnings. Python cannot lower absl's C++ log level in these wheels,
and in a notebook such lines land in whichever cell happens to run, which breaks nbval's
output checks and buries what matters. `filtered_native_stderr()` captures fd 2 for a
block, drops lines matching the known-benign patterns below, and re-emits every other
line on sys.stderr, so real errors still show.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

BENIGN_PATTERNS = (  # searched anywhere in a line, whatever its log prefix
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin",
    r"computation placer already registered",
    r"\] (Could not find cuda drivers|oneDNN custom operations are on|This TensorFlow binary is optimized)",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags",
    r"(inference_feedback_manager|landmark_projection_calculator)\.cc:\d+\]",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    r"^libpng warning: iCCP: known incorrect sRGB profile$",
    r"tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored (output_format|drop_control_dependency)\.$",
    r"mlir_graph_optimization_pass\.cc:\d+\] MLIR V1 optimization pass is not enabled$",
    # a multi-worker fine-tune's workers (tf.distribute's gRPC servers) and Ray's driver at labelling
    r"grpc_server_lib\.cc:\d+\] Started server with target: grpc://",
    r"coordination_service_agent\.cc:\d+\] Coordination agent has successfully connected\.$",
    r"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store and max_restarts > 0",
    r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$",
)
_BENIGN = re.compile("|".join(f"(?:{p})" for p in BENIGN_PATTERNS))


def is_benign(line: str) -> bool:
    return bool(_BENIGN.search(line.rstrip("\n")))


@contextlib.contextmanager
def filtered_native_stderr():
    """Capture fd 2 during the block; afterwards re-emit all but the known-benign lines."""
    try:
        sys.stderr.flush()
        saved_fd = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (some embedded interpreters): do nothing
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if line.strip() and not is_benign(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow():
    """`import tensorflow` without its benign native start-up lines; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_native_stderr():
        import tensorflow as tf
    return tf
