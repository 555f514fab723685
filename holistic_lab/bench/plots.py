"""The report's three figures, drawn from a `Report` with matplotlib (no pyplot: each call makes
its own Figure, so a notebook widget can redraw without global state):

- `speed_accuracy_figure`: end-to-end median latency against one accuracy metric, one point per
  variant, MediaPipe marked, and the Pareto front (the variants no other variant beats on both);
- `stage_bar_figure`: per-stage median ms per variant, stacked (medians do not add up to the
  end-to-end median exactly; the end-to-end median is marked beside each bar);
- `size_bar_figure`: the model bytes each variant runs.
"""
from __future__ import annotations

from .schema import END_TO_END, MEDIAPIPE, METRICS, Report


def _text(value: str) -> str:
    # matplotlib reads $...$ as mathtext: a variant named "a$b$" must not crash or change the plot
    return str(value).replace("$", r"\$")


def pareto_front(points, higher_is_better: bool = True) -> list[int]:
    """Indices of `points` ((latency_ms, accuracy) pairs) that no other point dominates: none
    is at least as fast and at least as accurate and strictly better in one. Sorted by latency."""
    sign = 1 if higher_is_better else -1
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(xo <= x and sign * yo >= sign * y and (xo < x or sign * yo > sign * y)
                        for j, (xo, yo) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def accuracy_choices(report: Report) -> list[tuple[str, str, str]]:
    """The (part, metric, dataset) triples the report has accuracy for, in the order first seen."""
    seen = []
    for row in report.accuracy:
        key = (row.part, row.metric, row.dataset)
        if key not in seen:
            seen.append(key)
    return seen


def default_threads(report: Report) -> int | None:
    """The fewest threads measured (the fairest comparison on a shared machine), or None."""
    return min((row.threads for row in report.latency), default=None)


def speed_accuracy_points(report: Report, part: str, metric: str, dataset: str = "", threads: int | None = None,
                          mode: str = "image") -> list[tuple[str, float, float]]:
    """(variant, end-to-end median ms, accuracy) for each variant measured on both."""
    threads = default_threads(report) if threads is None else threads
    latency = {row.variant: row.end_to_end.median_ms for row in report.latency
               if row.threads == threads and row.mode == mode}
    points = []
    for row in report.accuracy:
        if (row.part, row.metric, row.dataset) == (part, metric, dataset) and row.variant in latency:
            points.append((row.variant, latency[row.variant], row.value))
    return points


def speed_accuracy_figure(report: Report, part: str, metric: str, dataset: str = "", threads: int | None = None,
                          mode: str = "image"):
    from matplotlib.figure import Figure

    threads = default_threads(report) if threads is None else threads
    points = speed_accuracy_points(report, part, metric, dataset, threads, mode)
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.subplots()
    if points:
        front = pareto_front([(x, y) for _, x, y in points], METRICS[part][metric])
        axes.plot([points[i][1] for i in front], [points[i][2] for i in front], "--o", color="0.5",
                  markerfacecolor="none", markersize=13, label="Pareto front")
        for name, x, y in points:
            marker, colour = ("*", "tab:red") if name == MEDIAPIPE else ("o", "tab:blue")
            axes.scatter([x], [y], marker=marker, s=120 if name == MEDIAPIPE else 40, color=colour, zorder=3,
                         label="MediaPipe" if name == MEDIAPIPE else None)
            axes.annotate(_text(name), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        axes.legend(loc="best", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no variant has both latency and this metric", ha="center", transform=axes.transAxes)
    better = "higher is better" if METRICS[part][metric] else "lower is better"
    axes.set_xlabel(f"end-to-end median latency, ms ({mode} mode, {threads} thread(s))")
    axes.set_ylabel(_text(f"{part} {metric} {dataset}".strip() + f" ({better})"))
    axes.grid(alpha=0.3)
    return figure


def stage_bar_figure(report: Report, threads: int | None = None, mode: str = "image"):
    from matplotlib.figure import Figure

    threads = default_threads(report) if threads is None else threads
    rows = [row for row in report.latency if row.threads == threads and row.mode == mode]
    stages = list(dict.fromkeys(stage for row in rows for stage in row.stages))
    figure = Figure(figsize=(6.4, 0.6 + 0.45 * max(len(rows), 1)), layout="constrained")
    axes = figure.subplots()
    names = [_text(row.variant) for row in rows]
    left = [0.0] * len(rows)
    for stage in stages:
        widths = [row.stages[stage].median_ms if stage in row.stages else 0.0 for row in rows]
        axes.barh(names, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths)]
    axes.scatter([row.end_to_end.median_ms for row in rows], names, marker="|", s=200, color="black",
                 label=END_TO_END.replace("_", " "), zorder=3)
    axes.invert_yaxis()
    axes.set_xlabel(f"median ms per image ({mode} mode, {threads} thread(s))")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def size_bar_figure(report: Report):
    from matplotlib.figure import Figure

    variants = [variant for variant in report.variants if variant.total_bytes > 0]
    figure = Figure(figsize=(6.4, 0.6 + 0.45 * max(len(variants), 1)), layout="constrained")
    axes = figure.subplots()
    axes.barh([_text(v.name) for v in variants], [v.total_bytes / 1e6 for v in variants], color="tab:green")
    axes.invert_yaxis()
    axes.set_xlabel("model files, MB (all stages the variant runs)")
    return figure
