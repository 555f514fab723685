"""A report that is saved as it grows, so a long run stopped by Ctrl-C keeps what it measured.

    builder = ReportBuilder("report/report.json", machine_info(), settings, html_path="report/report.html")
    with builder:                                   # Ctrl-C or an error: saved as "interrupted", re-raised
        builder.add_variant(...); builder.add_latency(...); builder.save("latency int8 1 thread")
    # left normally: saved as "complete"

Every `save` rewrites the whole JSON atomically (`schema.write_report`) with state "running" and
the measured pieces named in `status.done`; a run killed outright (SIGKILL, power) leaves the last
save, still marked "running". The HTML page, when asked for, is written at the end only (complete
or interrupted): drawing its plots takes a second, too long to repeat after every piece. The first
save removes a page left by an earlier run, so a page beside the JSON always shows that JSON.
"""
from __future__ import annotations

from pathlib import Path

from ..files import written_path
from .schema import (AccuracyRow, LatencyRow, MacsRow, Machine, MemoryRow, PeakRow, Report, Settings, Status, Variant,
                     write_report)


class ReportBuilder:
    def __init__(self, json_path, machine: Machine | dict, settings: Settings | dict, html_path=None):
        self.json_path = Path(json_path)
        self.html_path = None if html_path is None else Path(html_path)
        self.report = Report(status=Status(state="running"), machine=Machine.model_validate(machine),
                             settings=Settings.model_validate(settings))

    def _append(self, section: str, row) -> None:
        # validated as a whole report, so a row naming an unknown variant is refused when added
        data = self.report.model_dump()
        data[section].append(row.model_dump())
        self.report = Report.model_validate(data)

    def add_variant(self, variant: Variant | dict) -> None:
        self._append("variants", Variant.model_validate(variant))

    def add_latency(self, row: LatencyRow | dict) -> None:
        self._append("latency", LatencyRow.model_validate(row))

    def add_memory(self, row: MemoryRow | dict) -> None:
        self._append("memory", MemoryRow.model_validate(row))

    def add_macs(self, row: MacsRow | dict) -> None:
        self._append("macs", MacsRow.model_validate(row))

    def add_accuracy(self, row: AccuracyRow | dict) -> None:
        self._append("accuracy", AccuracyRow.model_validate(row))

    def add_peak(self, row: PeakRow | dict) -> None:
        self._append("peak_gmacs", PeakRow.model_validate(row))

    def _set_status(self, state: str, done: str | None, note: str) -> None:
        status = self.report.status
        finished = status.done + ([done] if done else [])
        self.report = self.report.model_copy(update={"status": Status(state=state, done=finished, note=note or status.note)})

    def save(self, done: str | None = None) -> Path:
        """Write the JSON as it stands ("running"); `done` names the piece just measured."""
        self._set_status("running", done, "")
        path = write_report(self.report, self.json_path)
        if self.html_path is not None:  # an earlier run's page no longer describes this JSON; the new one comes at the end
            written_path(self.html_path).unlink(missing_ok=True)
        return path

    def _finish(self, state: str, note: str) -> Path:
        self._set_status(state, None, note)
        write_report(self.report, self.json_path)
        if self.html_path is not None:
            from .html import write_html

            write_html(self.report, self.html_path)
        return self.json_path

    def interrupted(self, note: str = "stopped by the user (Ctrl-C)") -> Path:
        """Save as "interrupted" (JSON, and the HTML page with its banner when asked for)."""
        return self._finish("interrupted", note)

    def complete(self) -> Path:
        """Save as "complete" (JSON, and the HTML page when asked for)."""
        return self._finish("complete", "")

    def __enter__(self) -> ReportBuilder:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            self.complete()
        elif issubclass(kind, KeyboardInterrupt):
            self.interrupted()
        else:
            self.interrupted(f"stopped by an error: {kind.__name__}: {error}")
        return False
