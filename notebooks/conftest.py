"""nbval settings for the course notebooks.

Cells marked `# NBVAL_CHECK_OUTPUT` are the regression record of what a notebook
computes: their stdout and results. Native libraries (TensorFlow, TFLite, MediaPipe's
C++ graph) write diagnostics to stderr from their own threads, so those lines can land
in any cell at any time; they are not compared.
"""
from nbval.plugin import IPyNbCell

_compare_outputs = IPyNbCell.compare_outputs


def _without_stderr(outputs):
    return [out for out in outputs if not (out.get("output_type") == "stream" and out.get("name") == "stderr")]


def compare_outputs_ignoring_stderr(self, test, ref, skip_compare=None):
    return _compare_outputs(self, _without_stderr(test), _without_stderr(ref), skip_compare)


IPyNbCell.compare_outputs = compare_outputs_ignoring_stderr
