"""Regressions between two benchmark reports (`holistic-lab bench --compare old/report.json`).

Measurements are matched by variant name and, for latency, by (stage, threads, mode) with
`end_to_end` as one more stage; for accuracy by (part, metric, dataset); for size by stage.
- latency: flagged when the whole 95% bootstrap interval of new median / old median lies above
  1 + `latency_tolerance` (5%): the two runs' raw timings (`Timing.samples_ms`) are resampled
  independently (two runs are not paired: nothing ties the i-th timing of one to the other's),
  so noise alone, on a machine as loaded as before, does not flag;
- accuracy: flagged when a metric worsens by more than its tolerance (`ACCURACY_TOLERANCE`,
  in the metric's own units: PCK, OKS and gesture accuracy are fractions, face NME is normalised
  by the outer-eye-corner distance, hand EPE is in image pixels);
- size: flagged when a stage's file or the total grows by more than `size_tolerance` (0: sizes
  are exact).
Variants in one report only are listed, not compared; reports from different machines,
library versions or image sets are compared anyway, with a warning saying what differs.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .schema import END_TO_END, Report, read_report
from .stats import median_ratio

ACCURACY_TOLERANCE = {"pck": 0.01, "oks": 0.01, "accuracy": 0.01, "nme": 0.002, "epe": 0.5}
LATENCY_TOLERANCE = 0.05
COMPARED_VERSIONS = ("tensorflow", "mediapipe", "numpy")


@dataclass(frozen=True)
class Regression:
    kind: str                # "latency" | "accuracy" | "size"
    variant: str
    what: str                # a stage, "end_to_end", "total", or "part metric dataset"
    old: float
    new: float
    change: float            # latency and size: new / old; accuracy: how much worse, in the metric's units
    threads: int | None = None
    mode: str | None = None
    low: float | None = None  # latency: the interval of new / old
    high: float | None = None

    def __str__(self) -> str:
        where = f"{self.variant} {self.what}" + (f" ({self.threads} thread(s), {self.mode})" if self.threads else "")
        if self.kind == "latency":
            return (f"latency {where}: {self.old:.2f} -> {self.new:.2f} ms median, x{self.change:.3f} "
                    f"(95% interval {self.low:.3f} to {self.high:.3f})")
        if self.kind == "size":
            return f"size {where}: {self.old:.0f} -> {self.new:.0f} bytes, x{self.change:.3f}"
        return f"accuracy {where}: {self.old:.4f} -> {self.new:.4f} ({self.change:.4f} worse)"


@dataclass
class Comparison:
    regressions: list[Regression] = field(default_factory=list)
    only_in_old: list[str] = field(default_factory=list)
    only_in_new: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    compared: int = 0        # measurements found in both reports and compared

    def lines(self) -> list[str]:
        """What a terminal shows: warnings, unmatched variants, each regression, and a verdict."""
        out = [f"warning: {text}" for text in self.warnings]
        out += [f"only in the old report: {', '.join(self.only_in_old)}"] if self.only_in_old else []
        out += [f"only in the new report: {', '.join(self.only_in_new)}"] if self.only_in_new else []
        out += [f"REGRESSION {regression}" for regression in self.regressions]
        out.append(f"{len(self.regressions)} regression(s) in {self.compared} compared measurements")
        return out


def _as_report(report) -> Report:
    return report if isinstance(report, Report) else read_report(Path(report))


def _machine_warnings(old: Report, new: Report) -> list[str]:
    warnings = []
    for name in ("cpu_model", "cores", "usable_cores", "cpu_flags"):
        before, after = getattr(old.machine, name), getattr(new.machine, name)
        if before != after:
            warnings.append(f"different machines ({name}: {before} vs {after}): latency is not comparable")
    for package in COMPARED_VERSIONS:
        before, after = old.machine.versions.get(package), new.machine.versions.get(package)
        if before != after:
            warnings.append(f"{package} {before} vs {after}")
    if (old.settings.images, old.settings.n_images) != (new.settings.images, new.settings.n_images):
        warnings.append(f"different images ({old.settings.images}, {old.settings.n_images} vs "
                        f"{new.settings.images}, {new.settings.n_images})")
    for name in ("workers", "stage_threads"):  # the cascade ran differently: its latency rows are not like for like
        before, after = getattr(old.settings, name), getattr(new.settings, name)
        if before != after:
            warnings.append(f"different {name} ({before} vs {after}): our cascade's latency is not comparable")
    for report, which in ((old, "old"), (new, "new")):
        if report.status.state != "complete":
            warnings.append(f"the {which} report is {report.status.state}, not complete")
    return warnings


def _latency(old: Report, new: Report, names: set, tolerance: float, n_boot: int, seed: int, comparison: Comparison):
    before = {(row.variant, row.threads, row.mode): row for row in old.latency}
    for row in new.latency:
        match = before.get((row.variant, row.threads, row.mode))
        if row.variant not in names or match is None:
            continue
        pairs = {END_TO_END: (match.end_to_end, row.end_to_end)}
        pairs.update({stage: (match.stages[stage], timing) for stage, timing in row.stages.items() if stage in match.stages})
        for stage, (old_timing, new_timing) in pairs.items():
            comparison.compared += 1
            if statistics.median(old_timing.samples_ms) <= 0:  # rounded to 0.01 ms: a ratio to 0 is undefined
                continue
            ratio = median_ratio(new_timing.samples_ms, old_timing.samples_ms, n_boot=n_boot, seed=seed)
            if ratio.low > 1 + tolerance:
                comparison.regressions.append(Regression("latency", row.variant, stage, old_timing.median_ms,
                                                         new_timing.median_ms, ratio.value, row.threads, row.mode,
                                                         ratio.low, ratio.high))


def _accuracy(old: Report, new: Report, names: set, tolerance: dict, comparison: Comparison):
    before = {(row.variant, row.part, row.metric, row.dataset): row for row in old.accuracy}
    for row in new.accuracy:
        match = before.get((row.variant, row.part, row.metric, row.dataset))
        if row.variant not in names or match is None:
            continue
        comparison.compared += 1
        worse = (match.value - row.value) if row.higher_is_better else (row.value - match.value)
        if worse > tolerance[row.metric]:
            what = f"{row.part} {row.metric} {row.dataset}".strip()
            comparison.regressions.append(Regression("accuracy", row.variant, what, match.value, row.value, worse))


def _size(old: Report, new: Report, names: set, tolerance: float, comparison: Comparison):
    for name in sorted(names):
        before, after = old.variant(name), new.variant(name)
        pairs = {stage: (before.stage_bytes[stage], size) for stage, size in after.stage_bytes.items()
                 if stage in before.stage_bytes}
        pairs["total"] = (before.total_bytes, after.total_bytes)
        for stage, (old_bytes, new_bytes) in pairs.items():
            comparison.compared += 1
            if old_bytes > 0 and new_bytes > old_bytes * (1 + tolerance):
                comparison.regressions.append(Regression("size", name, stage, old_bytes, new_bytes, new_bytes / old_bytes))


def compare_reports(old, new, *, latency_tolerance: float = LATENCY_TOLERANCE, accuracy_tolerance: dict | None = None,
                    size_tolerance: float = 0.0, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Regressions of `new` against `old` (each a `Report` or a path to a report.json)."""
    if latency_tolerance < 0 or size_tolerance < 0:
        raise ValueError(f"latency_tolerance and size_tolerance: expected >= 0, got {latency_tolerance}, {size_tolerance}")
    tolerance = {**ACCURACY_TOLERANCE, **(accuracy_tolerance or {})}
    unknown = set(tolerance) - set(ACCURACY_TOLERANCE)
    if unknown or any(value < 0 for value in tolerance.values()):
        raise ValueError(f"accuracy_tolerance: expected tolerances >= 0 for {', '.join(ACCURACY_TOLERANCE)}, "
                         f"got {accuracy_tolerance}")
    old, new = _as_report(old), _as_report(new)
    old_names, new_names = [v.name for v in old.variants], [v.name for v in new.variants]
    names = set(old_names) & set(new_names)
    comparison = Comparison(only_in_old=[n for n in old_names if n not in names],
                            only_in_new=[n for n in new_names if n not in names], warnings=_machine_warnings(old, new))
    _latency(old, new, names, latency_tolerance, n_boot, seed, comparison)
    _accuracy(old, new, names, tolerance, comparison)
    _size(old, new, names, size_tolerance, comparison)
    return comparison
