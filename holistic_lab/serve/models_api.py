"""The model endpoints (token required when the server has one):

    GET  /api/v1/models             the shipped models and every variant under <workspace>/variants/
    POST /api/v1/models/activate    {"variant": "shipped" | a name under variants/ | a path in the workspace}

A listed variant has its stages (kind, bytes, the metrics its manifest records, e.g. from the
command that measured it), its total size, whether it is the one served, its last benchmark (the
newest `holistic-lab bench` report under <workspace>/reports/ that measured it: end-to-end median
and ratio to MediaPipe in image mode), and, when it cannot be read (a checksum that does not
match, a file missing), the reason instead. Activation builds the
variant's pipelines and runs them on a real portrait before switching (`ServedModels.activate`):
a broken variant is refused with 422 naming it, and the old one keeps serving.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..bench.schema import read_report
from ..datasets import sample_image
from ..files import display_path
from ..mediapipe_models import model_path
from ..variants import MANIFEST, STAGES, read_variant
from .errors import ApiError
from .security import inside_workspace, require_token
from .served import SHIPPED, ServedModels

VARIANTS_FOLDER = "variants"
REPORTS_FOLDER = "reports"  # `holistic-lab bench --out reports/NAME`, run from the workspace
PROBE_SAMPLE = "astronaut"  # a portrait with a person: a variant that finds none there is broken


class Activate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variant: str = Field(min_length=1, max_length=1024,
                         description="'shipped', a variant's folder name under variants/, or a path in the workspace")


def shipped_entry(active: bool) -> dict:
    stages = {stage: {"kind": "float32 (shipped)", "bytes": model_path(shipped).stat().st_size, "metrics": {}}
              for stage, (_, shipped) in STAGES.items()}
    return {"name": SHIPPED, "path": None, "active": active, "stages": stages,
            "total_bytes": sum(entry["bytes"] for entry in stages.values()), "error": None}


def variant_entry(folder: Path, workspace: Path, active_folder: Path | None) -> dict:
    """One variant folder as listed; checked as activation would check it (read_variant)."""
    relative = str(folder.relative_to(workspace))
    active = active_folder is not None and folder.resolve() == active_folder.resolve()
    try:
        variant = read_variant(folder)
    except ValueError as error:
        return {"name": folder.name, "path": relative, "active": active, "stages": {}, "total_bytes": None,
                "error": str(error)}
    stages = {stage: {"kind": variant.manifest["stages"][stage].get("kind"), "bytes": path.stat().st_size,
                      "metrics": variant.manifest["stages"][stage].get("metrics") or {}}
              for stage, path in variant.stages.items()}
    return {"name": variant.name, "path": relative, "active": active, "stages": stages,
            "total_bytes": sum(entry["bytes"] for entry in stages.values()),
            "gesture_labels": (variant.manifest.get("gesture") or {}).get("labels"),
            "made": (variant.manifest.get("made_by") or {}).get("date"), "error": None}


def last_benchmarks(workspace: Path) -> dict[str, dict]:
    """The newest benchmark of each variant in <workspace>/reports/*/report.json, keyed by its resolved
    folder ("shipped" for the shipped models). A report's variant path is absolute or relative to the
    workspace; a report that cannot be read is skipped (`holistic-lab bench --compare` names its fault)."""
    newest: dict[str, dict] = {}
    for path in sorted((workspace / REPORTS_FOLDER).glob("*/report.json")):
        try:
            report = read_report(path)
        except ValueError:
            continue
        for variant in report.variants:
            rows = [row for row in report.latency if row.variant == variant.name and row.mode == "image"]
            if not rows or variant.path == "mediapipe":
                continue
            key = SHIPPED if variant.path == SHIPPED else str((workspace / variant.path).resolve())
            row = min(rows, key=lambda r: r.threads)
            entry = {"report": str(path.relative_to(workspace)), "date": report.settings.date,
                     "threads": row.threads, "image_median_ms": round(row.end_to_end.median_ms, 2),
                     "ratio_to_mediapipe": None if row.ratio_to_mediapipe is None else row.ratio_to_mediapipe.value}
            if key not in newest or entry["date"] > newest[key]["date"]:
                newest[key] = entry
    return newest


def variant_folder(workspace: Path, value: str) -> Path | None:
    """The folder `value` names (None: shipped): a path in the workspace, else a name under variants/."""
    if value == SHIPPED:
        return None
    folder = inside_workspace(workspace, value, "variant")
    if not (folder / MANIFEST).is_file() and "/" not in value:
        folder = inside_workspace(workspace, f"{VARIANTS_FOLDER}/{value}", "variant")
    if not (folder / MANIFEST).is_file():
        raise ApiError(400, "unknown_variant", f"variant: {value!r} is not a variant folder in the workspace "
                       f"(no {MANIFEST}); GET /api/v1/models lists them")
    return folder


def probe(pipeline) -> None:
    """Refuse a variant that runs but finds no person on a sample portrait."""
    result = pipeline.process(sample_image(PROBE_SAMPLE))
    if not result.present["pose"]:
        raise ValueError(f"it finds no person on the sample portrait {PROBE_SAMPLE!r}")


def install(app: FastAPI) -> None:
    served: ServedModels = app.state.served
    workspace = app.state.settings.workspace

    @app.get("/api/v1/models", dependencies=[Depends(require_token)],
             summary="the shipped models and the variants in the workspace, with sizes and recorded metrics")
    def list_models() -> dict:
        active_folder = served.folder
        folders = sorted(path.parent for path in (workspace / VARIANTS_FOLDER).glob(f"*/{MANIFEST}"))
        models = [shipped_entry(active_folder is None)]
        models += [variant_entry(folder, workspace, active_folder) for folder in folders]
        benchmarks = last_benchmarks(workspace)
        for entry in models:
            key = SHIPPED if entry["path"] is None else str((workspace / entry["path"]).resolve())
            entry["last_benchmark"] = benchmarks.get(key)
        return {"active": served.name, "models": models}

    @app.post("/api/v1/models/activate", dependencies=[Depends(require_token)],
              summary="serve another variant from the next request on (tried on a portrait first)")
    def activate(request: Activate) -> dict:
        folder = variant_folder(workspace, request.variant)
        try:
            name = served.activate(folder, probe=probe)
        except ValueError as error:
            where = request.variant if folder is None else display_path(folder)
            raise ApiError(422, "broken_variant", f"variant {where} was not activated, {served.name!r} keeps "
                           f"serving: {error}") from None
        return {"active": name, "path": None if folder is None else str(folder.relative_to(workspace.resolve()))}
