"""The benchmark report's JSON (`report.json`): a versioned schema as pydantic models, with
`write_report` (atomic) and `read_report` (refuses what does not fit, naming the field).

Schema version 1; a change that old readers cannot read raises `SCHEMA_VERSION`.

    {"format": "holistic-lab-bench", "schema_version": 1,
     "status":   {"state": "complete" | "running" | "interrupted", "done": [...], "note": ""},
     "machine":  {"cpu_model", "cores", "usable_cores", "cpu_flags", "os", "python", "versions"},
     "settings": {"images", "n_images", "repeats", "warmup", "threads", "workers", "stage_threads", "quick",
                  "command", "date"},
     "variants": [{"name", "path", "kinds": {stage: kind}, "stage_bytes": {stage: bytes}, "total_bytes"}],
     "latency":  [{"variant", "threads", "mode", "stages": {stage: Timing}, "end_to_end": Timing,
                   "ratio_to_mediapipe": Ratio | null, "frames_per_s": float | null}],
     "memory":   [{"variant", "peak_rss_mb"}],
     "macs":     [{"variant", "stage", "threads", "macs", "gmacs_per_s", "fraction_of_peak"}],
     "accuracy": [{"variant", "part", "metric", "value", "n", "low", "high", "dataset"}],
     "peak_gmacs": [{"threads", "gmacs", "method"}]}

A `Timing` is the summary of one sample (median/p90/min/max ms, n) and the sample itself,
`samples_ms`, rounded to 0.01 ms: `bench.compare` recomputes the new/old ratio's bootstrap interval
from them (a few thousand numbers, tens of kB). `stage` names are the cascade's stages
(`pose_detection` ... `hand_landmark`, `gesture`) and `end_to_end` in `macs`. MediaPipe itself is the
variant named `mediapipe` (its path "mediapipe"; its latency rows have no stages, only end to end).
`status.state` is "running" in a report saved mid-run (a run killed outright leaves it so),
"interrupted" after Ctrl-C or an error, "complete" at the end; `done` lists what was measured.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..files import atomic_write, display_path, read_json_object
from .stats import MedianRatio, summarize

FORMAT = "holistic-lab-bench"
SCHEMA_VERSION = 1
END_TO_END = "end_to_end"
MEDIAPIPE = "mediapipe"
MAX_REPORT_BYTES = 64 << 20
NUMBER_LIST = re.compile(r"\[(?:\s*-?[0-9][0-9.eE+-]*,?)+\s*\]")
SAMPLE_DECIMALS = 2  # 0.01 ms: far below the timer's noise, and short in the JSON
SUMMARY_DECIMALS = 3
# accuracy metrics per part, and whether a higher value is better
METRICS = {"body": {"pck": True, "oks": True}, "face": {"nme": False}, "hand": {"pck": True, "epe": False},
           "gesture": {"accuracy": True}}


class _Model(BaseModel):
    # NaN and infinity are refused in every float (json.loads accepts them; a timing never is one)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Timing(_Model):
    """One sample of timings. The runner gives a stage that did not run on an image (no hand
    found) 0 ms there, as `pipeline.profile` does, so every stage has one timing per image and
    repeat, in the same order as the end-to-end sample."""
    median_ms: float = Field(ge=0)
    p90_ms: float = Field(ge=0)
    min_ms: float = Field(ge=0)
    max_ms: float = Field(ge=0)
    n: int = Field(ge=1)
    samples_ms: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)


    @model_validator(mode="after")
    def _count_matches(self):
        if len(self.samples_ms) != self.n:
            raise ValueError(f"n is {self.n} but samples_ms holds {len(self.samples_ms)} timings")
        return self


def timing(samples_ms, name: str = "samples_ms") -> Timing:
    """A `Timing` from raw timings in ms (summarised before rounding; stored rounded to 0.01 ms)."""
    summary = summarize(samples_ms, name)
    return Timing(median_ms=round(summary.median_ms, SUMMARY_DECIMALS), p90_ms=round(summary.p90_ms, SUMMARY_DECIMALS),
                  min_ms=round(summary.min_ms, SUMMARY_DECIMALS), max_ms=round(summary.max_ms, SUMMARY_DECIMALS), n=summary.n, samples_ms=[round(float(value), SAMPLE_DECIMALS) for value in samples_ms])


class Ratio(_Model):
    value: float = Field(gt=0)
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    level: float = Field(gt=0, lt=1)
    n_boot: int = Field(ge=1)
    paired: bool


    @classmethod
    def of(cls, ratio: MedianRatio) -> Ratio:
        """From `bench.stats.median_ratio`'s result."""
        return cls(value=ratio.value, low=ratio.low, high=ratio.high, level=ratio.level, n_boot=ratio.n_boot,
                   paired=ratio.paired)


class Status(_Model):
    state: Literal["complete", "running", "interrupted"]
    done: list[str] = []
    note: str = ""


class Machine(_Model):
    cpu_model: str
    cores: int = Field(ge=0)
    usable_cores: int = Field(ge=0)
    cpu_flags: list[str]
    os: str
    python: str
    versions: dict[str, str]


class Settings(_Model):
    images: str              # where the images came from (a folder, or the fixtures' names)
    n_images: int = Field(ge=0)
    repeats: int = Field(ge=1)
    warmup: int = Field(ge=0)
    threads: list[int] = Field(min_length=1)
    workers: int = Field(default=1, ge=1)    # threads for the face and hand branches (HolisticPipeline(workers=))
    stage_threads: dict[str, int] = {}       # stages run on their own thread count instead of `threads`
    quick: bool
    command: str
    date: str                # ISO 8601, UTC


class Variant(_Model):
    name: str = Field(min_length=1)
    path: str                # a variant folder, "shipped" or "mediapipe"
    kinds: dict[str, str] = {}       # stage -> kind from the manifest (float16, int8, pruned-0.3, ...)
    stage_bytes: dict[str, int] = {}  # stage -> size of the .tflite it runs (shipped stages included)
    total_bytes: int = Field(ge=0)

    @model_validator(mode="after")
    def _total_is_sum(self):
        if self.stage_bytes and sum(self.stage_bytes.values()) != self.total_bytes:
            raise ValueError(f"total_bytes is {self.total_bytes} but stage_bytes add up to {sum(self.stage_bytes.values())}")
        return self


class LatencyRow(_Model):
    variant: str
    threads: int = Field(ge=1)
    mode: Literal["image", "video"]
    stages: dict[str, Timing] = {}
    end_to_end: Timing
    ratio_to_mediapipe: Ratio | None = None
    frames_per_s: float | None = Field(default=None, gt=0)  # video mode: frames / wall-clock seconds of the clips


class MemoryRow(_Model):
    variant: str
    peak_rss_mb: float = Field(gt=0)


class MacsRow(_Model):
    variant: str
    stage: str               # a stage or "end_to_end"
    threads: int = Field(ge=1)
    macs: int = Field(ge=0)
    gmacs_per_s: float = Field(ge=0)
    fraction_of_peak: float = Field(ge=0)


class AccuracyRow(_Model):
    variant: str
    part: Literal["body", "face", "hand", "gesture"]
    metric: str
    value: float
    n: int = Field(ge=1)
    low: float | None = None
    high: float | None = None
    dataset: str = ""


    @model_validator(mode="after")
    def _metric_of_part(self):
        if self.metric not in METRICS[self.part]:
            raise ValueError(f"metric {self.metric!r} is not one of {self.part}'s: {', '.join(METRICS[self.part])}")
        if (self.low is None) != (self.high is None):
            raise ValueError("low and high come together (an interval) or not at all")
        return self

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.part][self.metric]


class PeakRow(_Model):
    threads: int = Field(ge=1)
    gmacs: float = Field(gt=0)
    method: str              # what was measured, e.g. "1024x1024x1024 float32 GEMM, TFLite XNNPACK"


class Report(_Model):
    format: Literal["holistic-lab-bench"] = FORMAT
    schema_version: Literal[1] = SCHEMA_VERSION
    status: Status
    machine: Machine
    settings: Settings
    variants: list[Variant] = []
    latency: list[LatencyRow] = []
    memory: list[MemoryRow] = []
    macs: list[MacsRow] = []
    accuracy: list[AccuracyRow] = []
    peak_gmacs: list[PeakRow] = []

    @model_validator(mode="after")
    def _rows_name_known_variants(self):
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variants: a name appears twice ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
        for section in ("latency", "memory", "macs", "accuracy"):
            for index, row in enumerate(getattr(self, section)):
                if row.variant not in names:
                    raise ValueError(f"{section}.{index}.variant {row.variant!r} is not in variants")
        return self

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ValueError(f"variant {name!r} is not in this report (it has {', '.join(v.name for v in self.variants)})")


def _field_error(error: ValidationError, where: str) -> ValueError:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(the report)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return ValueError(f"{where}: field {field}: {first['msg']}{more}")


def parse_report(data: dict, where: str = "report") -> Report:
    """A `Report` from a parsed JSON object; a ValueError naming the first wrong or missing field."""
    if data.get("format") != FORMAT:
        raise ValueError(f"{where}: field format: expected {FORMAT!r}, got {data.get('format')!r}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{where}: field schema_version: this holistic-lab reads version {SCHEMA_VERSION}, "
                         f"got {data.get('schema_version')!r}")
    try:
        return Report.model_validate(data)
    except ValidationError as error:
        raise _field_error(error, where) from None


def read_report(path) -> Report:
    """Read and check a `report.json`; a ValueError naming the file and what is wrong (not JSON,
    truncated, another format or schema version, a missing or invalid field)."""
    return parse_report(read_json_object(path, "a holistic-lab benchmark report", MAX_REPORT_BYTES), display_path(path))


def is_report_file(path) -> bool:
    """Whether `path` is a report.json this project wrote (any schema version): the `is_ours` test
    for `files.check_output_file`, so a new run may replace an old report but not another file."""
    try:
        return read_json_object(path, "a holistic-lab benchmark report", MAX_REPORT_BYTES).get("format") == FORMAT
    except ValueError:
        return False


def report_json(report: Report) -> str:
    """The report as JSON text (validated again first: a report built with `model_construct` or
    edited in place is checked before it can replace a good file)."""
    data = report.model_dump(mode="json")
    parse_report(data, "report to write")
    text = json.dumps(data, indent=1, allow_nan=False)
    # lists of numbers (the raw timings) on one line each: readable, and half the size
    return NUMBER_LIST.sub(lambda match: "[" + "".join(match.group(0)[1:-1].split()) + "]", text) + "\n"


def write_report(report: Report, path) -> Path:
    """Write `report` to `path` atomically (a temporary file in the same folder, then os.replace):
    if serialising fails, the file already there is left as it was."""
    text = report_json(report)
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
