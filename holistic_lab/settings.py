"""Run-time settings read from the environment, in one place.

HOLISTIC_LAB_QUICK=1 (set by CI) shrinks epochs, sample counts and repeat counts in
notebooks and benchmarks; it never removes a check.
"""
from __future__ import annotations

import os

QUICK: bool = os.environ.get("HOLISTIC_LAB_QUICK", "0") not in ("", "0", "false", "False")


def quick_or(full, quick):
    """`quick` in quick mode, else `full` (for epochs, sample counts, repeats)."""
    return quick if QUICK else full
