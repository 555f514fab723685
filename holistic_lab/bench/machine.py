"""The machine a benchmark ran on, read without importing TensorFlow or MediaPipe.

The CPU model and the instruction-set flags XNNPACK chooses its kernels by (AVX2 + FMA + F16C for
float and float16 weights; AVX-512F and the VNNI dot products, AVX512_VNNI or AVX-VNNI, for int8)
come from /proc/cpuinfo; library versions from the installed packages' metadata.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from ..mediapipe_models import installed_versions

XNNPACK_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni")  # avx_vnni: AVX-VNNI's name in Linux
CPUINFO = Path("/proc/cpuinfo")


def cpu_model_and_flags(cpuinfo: Path = CPUINFO) -> tuple[str, list[str]]:
    """The first processor's model name and which of `XNNPACK_FLAGS` it has ("unknown", [] where
    /proc/cpuinfo does not exist, e.g. macOS)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return platform.processor() or "unknown", []
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, [flag for flag in XNNPACK_FLAGS if flag in flags]


def machine_info() -> dict:
    """The report's `machine` section (see `bench.schema.Machine`)."""
    model, flags = cpu_model_and_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model, "cores": os.cpu_count() or 0, "usable_cores": usable or 0, "cpu_flags": flags,
            "os": platform.platform(), "python": sys.version.split()[0], "versions": installed_versions()}
