"""Timing statistics for the benchmark report: a summary of one sample of timings, and the
ratio of two samples' medians with a percentile bootstrap interval (Efron & Tibshirani,
"An Introduction to the Bootstrap", 1993, ch. 13).

Medians, not means: a timing sample has a long right tail (a page fault, the other process on
a 2-core machine) that moves the mean but barely the median.

Two ways to resample, and when each is right:
- independent (`paired=False`, the default): each sample is resampled on its own. Right for two
  samples taken at different times, e.g. the same variant in an old and a new report
  (`bench.compare`); it assumes nothing about the order of the values.
- paired (`paired=True`): the i-th values of both samples belong together (the runner timed the
  candidate and the reference on the same image, one right after the other), so image indices are
  resampled jointly. The images' own spread (a crowded image is slow for both) then cancels in
  the ratio, and the interval is narrower and still honest. The runner uses it for the ratio to
  MediaPipe within one interleaved run; it needs two samples of the same length in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    n: int


@dataclass(frozen=True)
class MedianRatio:
    """candidate median / reference median, with its bootstrap interval [low, high]."""
    value: float
    low: float
    high: float
    level: float
    n_boot: int
    paired: bool


def timings_array(samples_ms, name: str = "samples_ms") -> np.ndarray:
    """`samples_ms` as a 1-D float64 array; a ValueError naming `name` when it is empty or holds
    a negative, NaN or infinite value (a timing is a finite duration)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name}: expected a flat list of timings in ms, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name}: no timings (expected at least one)")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: holds a NaN or infinite timing (expected finite milliseconds)")
    if np.any(values < 0):
        raise ValueError(f"{name}: holds a negative timing ({values.min():g} ms; expected >= 0)")
    return values


def summarize(samples_ms, name: str = "samples_ms") -> Summary:
    """Median, 90th percentile, min, max and count of one sample of timings."""
    values = timings_array(samples_ms, name)
    return Summary(float(np.median(values)), float(np.percentile(values, 90)), float(values.min()),
                   float(values.max()), int(values.size))


def median_ratio(candidate_ms, reference_ms, *, paired: bool = False, n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = 0) -> MedianRatio:
    """median(candidate) / median(reference) with a percentile bootstrap interval at `level`.

    Below 1: the candidate is faster. Seeded, so the same samples give the same interval.
    """
    candidate = timings_array(candidate_ms, "candidate_ms")
    reference = timings_array(reference_ms, "reference_ms")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot: expected an integer >= 100, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a fraction between 0 and 1, got {level!r}")
    if np.median(reference) <= 0:
        raise ValueError("reference_ms: its median is 0 ms; a ratio to it is undefined")
    rng = np.random.default_rng(seed)
    if paired:
        if candidate.size != reference.size:
            raise ValueError(f"paired: candidate_ms has {candidate.size} timings and reference_ms {reference.size}; "
                             "a paired ratio needs one of each per image, in the same order")
        picks = rng.integers(0, candidate.size, (n_boot, candidate.size))
        candidate_picks, reference_picks = picks, picks
    else:
        candidate_picks = rng.integers(0, candidate.size, (n_boot, candidate.size))
        reference_picks = rng.integers(0, reference.size, (n_boot, reference.size))
    # a resample of a sample full of zeros can have median 0: such draws say nothing about the ratio
    reference_medians = np.median(reference[reference_picks], axis=1)
    kept = reference_medians > 0
    ratios = np.median(candidate[candidate_picks], axis=1)[kept] / reference_medians[kept]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return MedianRatio(float(np.median(candidate) / np.median(reference)), float(low), float(high), float(level),
                 int(n_boot), bool(paired))
