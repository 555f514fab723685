"""The report explorer: pick variants, an accuracy metric, threads and mode; the speed-accuracy
plot and a table of the chosen variants redraw.

Every widget event calls a plain method (`select_variants`, `select_metric`, `select_threads`,
`select_mode`), so the explorer is tested without a browser and can be driven from code, like
`holistic_lab.widgets.KeypointExplorer`. The plot is an `ipywidgets.Image` holding PNG bytes,
which survives in a saved notebook's widget state.
"""
from __future__ import annotations

import html
import io

from .plots import accuracy_choices, default_threads, speed_accuracy_figure, speed_accuracy_points
from .schema import Report, read_report


class ReportExplorer:
    def __init__(self, report: Report | str):
        self.report = report if isinstance(report, Report) else read_report(report)
        self.metrics = accuracy_choices(self.report)
        if not self.metrics:
            raise ValueError("the report has no accuracy rows to plot speed against (it was run with --accuracy none)")
        self.variants = [variant.name for variant in self.report.variants]
        self.threads_choices = sorted({row.threads for row in self.report.latency})
        self.modes = sorted({row.mode for row in self.report.latency})
        self.chosen = list(self.variants)
        self.metric = self.metrics[0]
        self.threads = default_threads(self.report)
        self.mode = "image" if "image" in self.modes else self.modes[0]
        self._png: bytes = b""
        self._table = ""
        self._widgets = None
        self.redraw()

    def select_variants(self, names) -> None:
        names = list(names)
        unknown = [name for name in names if name not in self.variants]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; the report has {self.variants}")
        self.chosen = names
        self.redraw()

    def select_metric(self, part: str, metric: str, dataset: str = "") -> None:
        if (part, metric, dataset) not in self.metrics:
            raise ValueError(f"no accuracy {part} {metric} {dataset!r} in the report; it has {self.metrics}")
        self.metric = (part, metric, dataset)
        self.redraw()

    def select_threads(self, threads: int) -> None:
        if threads not in self.threads_choices:
            raise ValueError(f"no latency at {threads} threads; the report has {self.threads_choices}")
        self.threads = threads
        self.redraw()

    def select_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"no latency in {mode!r} mode; the report has {self.modes}")
        self.mode = mode
        self.redraw()

    @property
    def points(self) -> list[tuple[str, float, float]]:
        """(variant, end-to-end median ms, metric value) of the chosen variants, as plotted."""
        return [point for point in speed_accuracy_points(self.report, *self.metric, threads=self.threads, mode=self.mode)
                if point[0] in self.chosen]

    def _chosen_report(self) -> Report:
        return self.report.model_copy(update={"accuracy": [row for row in self.report.accuracy
                                                           if row.variant in self.chosen]})

    def redraw(self) -> None:
        figure = speed_accuracy_figure(self._chosen_report(), *self.metric, threads=self.threads, mode=self.mode)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        self._png = buffer.getvalue()
        ratios = {row.variant: row for row in self.report.latency if row.threads == self.threads and row.mode == self.mode}
        lines = ["<table><tr><th>variant</th><th>median ms</th><th>p90 ms</th><th>x MediaPipe</th>"
                 f"<th>{html.escape(' '.join(self.metric).strip())}</th></tr>"]
        for name, ms, value in self.points:
            ratio = ratios[name].ratio_to_mediapipe
            lines.append(f"<tr><td>{html.escape(name)}</td><td>{ms:.1f}</td><td>{ratios[name].end_to_end.p90_ms:.1f}</td>"
                         f"<td>{'' if ratio is None else f'{ratio.value:.2f} [{ratio.low:.2f}, {ratio.high:.2f}]'}</td>"
                         f"<td>{value:.4f}</td></tr>")
        self._table = "".join(lines) + "</table>"
        if self._widgets is not None:
            self._widgets["image"].value = self._png
            self._widgets["table"].value = self._table

    def widget(self):
        """The explorer as ipywidgets: variants, metric, threads and mode pickers above the plot."""
        import ipywidgets as w

        variants = w.SelectMultiple(options=self.variants, value=tuple(self.chosen), description="variants", rows=4)
        metric = w.Dropdown(options=[(" ".join(choice).strip(), choice) for choice in self.metrics], value=self.metric,
                            description="accuracy")
        threads = w.Dropdown(options=self.threads_choices, value=self.threads, description="threads")
        mode = w.Dropdown(options=self.modes, value=self.mode, description="mode")
        variants.observe(lambda change: self.select_variants(change["new"]), "value")
        metric.observe(lambda change: self.select_metric(*change["new"]), "value")
        threads.observe(lambda change: self.select_threads(change["new"]), "value")
        mode.observe(lambda change: self.select_mode(change["new"]), "value")
        self._widgets = {"image": w.Image(value=self._png, format="png"), "table": w.HTML(self._table),
                         "variants": variants, "metric": metric, "threads": threads, "mode": mode}
        return w.VBox([w.HBox([variants, w.VBox([metric, threads, mode])]), self._widgets["image"],
                       self._widgets["table"]])
