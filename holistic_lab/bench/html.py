"""`report.html`: the whole benchmark report as one self-contained page that works offline.

Inline CSS, no script, no font, no link to anything: the figures (`bench.plots`) are embedded as
base64 PNG `data:` images. Every string that comes from the report (variant names and paths are
user input) goes through `_text`, which escapes HTML and also writes "//", "url(" and "@import"
as character references, so the page's source never holds anything a browser could fetch,
whatever the names hold; the browser still shows them as typed.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ..files import atomic_write
from .plots import accuracy_choices, size_bar_figure, speed_accuracy_figure, stage_bar_figure
from .schema import Report

GENERATOR = '<meta name="generator" content="holistic-lab bench">'
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.banner { background: #fff3cd; border: 2px solid #d39e00; padding: 0.8em 1em; font-weight: bold; }
.figure { margin: 1em 0; } img { max-width: 100%; }
.note { color: #555; font-size: 0.85em; }
"""


def _text(value) -> str:
    escaped = html.escape(str(value), quote=True)
    return escaped.replace("/", "&#47;").replace("url(", "url&#40;").replace("@", "&#64;")


def _number(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_text(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<div class="figure"><img alt="{_text(alt)}" src="data:image/png;base64,{encoded}"></div>'


def _banner(report: Report) -> str:
    status = report.status
    if status.state == "complete":
        return ""
    what = {"interrupted": "This run was interrupted", "running": "This run did not finish (still running, or killed)"}
    done = "; ".join(status.done) or "nothing"
    note = f" ({status.note})" if status.note else ""
    return f'<p class="banner">{_text(what[status.state] + note)}. Measured before it stopped: {_text(done)}.</p>'


def _latency_table(report: Report) -> str:
    stages = list(dict.fromkeys(stage for row in report.latency for stage in row.stages))
    header = ["variant", "threads", "mode", "median ms", "p90 ms", "n", "x MediaPipe", "95% interval", "frames/s",
              *(f"{stage} ms" for stage in stages)]
    rows = []
    for row in report.latency:
        ratio = row.ratio_to_mediapipe
        interval = "" if ratio is None else f"{ratio.low:.2f} to {ratio.high:.2f}" + (" (paired)" if ratio.paired else "")
        rows.append([row.variant, row.threads, row.mode, _number(row.end_to_end.median_ms), _number(row.end_to_end.p90_ms),
                     row.end_to_end.n, "" if ratio is None else f"{ratio.value:.2f}", interval, _number(row.frames_per_s, 1),
                     *(_number(row.stages[stage].median_ms) if stage in row.stages else "" for stage in stages)])
    return _table(header, rows)


def _sections(report: Report) -> list[str]:
    machine, settings = report.machine, report.settings
    parts = [_banner(report), "<h2>Machine</h2>", _table(["", ""], [
        ["CPU", machine.cpu_model], ["cores (usable)", f"{machine.cores} ({machine.usable_cores})"],
        ["flags XNNPACK uses", " ".join(machine.cpu_flags) or "none found"], ["OS", machine.os],
        ["Python", machine.python], *([name, version] for name, version in machine.versions.items())])]
    parts += ["<h2>Settings</h2>", _table(["", ""], [
        ["images", f"{settings.images} ({settings.n_images})"], ["repeats", settings.repeats], ["warm-up", settings.warmup],
        ["threads", ", ".join(map(str, settings.threads))], ["quick mode", settings.quick], ["command", settings.command],
        ["date", settings.date]])]
    parts += ["<h2>Variants and sizes</h2>", _table(["variant", "path", "stage kinds", "MB"], [
        [v.name, v.path, ", ".join(f"{stage}: {kind}" for stage, kind in v.kinds.items()), _number(v.total_bytes / 1e6)]
        for v in report.variants]), _figure(size_bar_figure(report), "model size per variant")]
    parts += ["<h2>Latency</h2>", '<p class="note">Medians over all images and repeats; the interval is a 95% '
              "percentile bootstrap of the ratio of medians.</p>", _latency_table(report)]
    if report.latency:
        parts.append(_figure(stage_bar_figure(report), "median ms per stage per variant"))
    for part, metric, dataset in accuracy_choices(report):
        parts.append(_figure(speed_accuracy_figure(report, part, metric, dataset), f"latency against {part} {metric}"))
    parts += ["<h2>Accuracy</h2>", _table(["variant", "part", "metric", "dataset", "value", "n", "95% interval"], [
        [row.variant, row.part, row.metric, row.dataset, _number(row.value, 4), row.n,
         "" if row.low is None else f"{row.low:.4f} to {row.high:.4f}"] for row in report.accuracy])]
    parts += ["<h2>Peak memory</h2>", _table(["variant", "peak RSS MB"],
                                             [[row.variant, _number(row.peak_rss_mb, 1)] for row in report.memory])]
    parts += ["<h2>MACs and the machine's peak</h2>",
              _table(["threads", "peak GMAC/s", "measured by"], [[p.threads, _number(p.gmacs, 1), p.method]
                                                                  for p in report.peak_gmacs]),
              _table(["variant", "stage", "threads", "MMACs", "GMAC/s", "of peak"], [
                  [row.variant, row.stage, row.threads, _number(row.macs / 1e6, 1), _number(row.gmacs_per_s, 2),
                   f"{row.fraction_of_peak:.1%}"] for row in report.macs])]
    return parts


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    title = f"holistic-lab benchmark, {report.settings.date}"
    body = "\n".join(_sections(report))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR}<title>{_text(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_text(title)}</h1>\n{body}\n</body></html>\n")


def is_report_page(path) -> bool:
    """Whether `path` is a report.html this project wrote (the `is_ours` test for
    `files.check_output_file`)."""
    if not Path(path).is_file():  # a folder, or a named pipe that would block the read forever
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return GENERATOR in file.read(4096)
    except OSError:
        return False


def write_html(report: Report, path):
    """Write `render_html(report)` to `path` atomically."""
    text = render_html(report)
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
