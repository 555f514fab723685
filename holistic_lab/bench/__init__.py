"""Chapter 09: the benchmark report. MediaPipe itself and each variant, side by side on the same
images in one interleaved run: latency per stage and end to end (image and video mode), size,
peak memory, MACs against the machine's measured peak, accuracy per part on human annotations.

    builder = ReportBuilder("report/report.json", machine_info(), settings, html_path="report/report.html")
    with builder:                                    # Ctrl-C: saved as "interrupted", with what was measured
        builder.add_variant({...}); builder.add_latency({...}); builder.save("int8, 1 thread")
    compare_reports("old/report.json", "report/report.json").lines()

One idea per file, in the order a run flows: `machine` (CPU model, XNNPACK's flags, library
versions), `stats` (median/p90 of a timing sample; ratio of medians with a bootstrap interval,
independent or paired), `schema` (report.json: versioned pydantic models, atomic `write_report`,
`read_report` that names a wrong field), `builder` (a report saved after every measured piece),
`plots` (speed-accuracy with its Pareto front, per-stage stacked bar, size bar), `html` (one
self-contained offline page), `compare` (regressions beyond noise between two reports), `explore`
(the ipywidgets explorer of a report), and the measuring side: `macs` (MACs read from a .tflite),
`peak` (the machine's GEMM peak through XNNPACK) and `run` (the runner that fills a report:
`run_bench`, what `holistic-lab bench` calls).

Importing this package loads neither TensorFlow, MediaPipe nor matplotlib; the names below are
imported on first use.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "machine_info": "machine", "cpu_model_and_flags": "machine",
    "Summary": "stats", "MedianRatio": "stats", "summarize": "stats", "median_ratio": "stats",
    "SCHEMA_VERSION": "schema", "Report": "schema", "Ratio": "schema", "Machine": "schema", "Settings": "schema",
    "Variant": "schema", "LatencyRow": "schema", "MemoryRow": "schema", "MacsRow": "schema", "AccuracyRow": "schema",
    "PeakRow": "schema", "Status": "schema", "Timing": "schema", "timing": "schema", "read_report": "schema",
    "write_report": "schema", "parse_report": "schema", "is_report_file": "schema",
    "ReportBuilder": "builder",
    "pareto_front": "plots", "speed_accuracy_figure": "plots", "stage_bar_figure": "plots", "size_bar_figure": "plots",
    "accuracy_choices": "plots",
    "render_html": "html", "write_html": "html", "is_report_page": "html",
    "Comparison": "compare", "Regression": "compare", "compare_reports": "compare",
    "ReportExplorer": "explore",
    "tflite_macs": "macs", "total_macs": "macs", "Peak": "peak", "gemm_peak": "peak",
    "run_bench": "run", "parse_variants": "run", "image_paths": "run",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'holistic_lab.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
