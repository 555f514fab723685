"""Accuracy against human annotations: PCK, OKS AP, face NME, hand PCK and EPE, per part.

What each number is (the conventions of the COCO, 300-W and hand-pose literature):
- body PCK@alpha: share of annotated body points within alpha x the long side of the
  person's box (default alpha 0.1); OKS AP: COCO keypoint AP over the 17 body points, by
  xtcocotools' COCOeval with the COCO sigmas (not hand-written);
- face NME: mean point error over the 68 iBUG points divided by the inter-ocular distance
  (outer eye corners, iBUG 36 and 45), the mesh read through `IBUG68_TO_FACE_MESH`, so it
  holds the teacher's error and the mapping's together;
- hand PCK@0.2: share of the 21 joints within 0.2 x the long side of the annotated hand
  box; EPE: mean end-point error in pixels.
A part the model did not find counts as wrong for PCK and is left out of EPE/NME (the
`found` column says how often that happened). MediaPipe Holistic tracks one person: in
an image with several annotated people, the prediction is scored against the person it
matches best (smallest mean distance over shared points, relative to that person's
box); OKS AP scores it against all of them, so missed people lower AP only.
`evaluate(model, dataset)` runs anything with `.process(rgb) -> HolisticResult` (and
`.process_hand(rgb, box, side)` for hand-only crops) and returns a `MetricTable`.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from .formats.sample import box_of_points
from .images import load_rgb
from .topology import COCO_BODY_TO_POSE, COCO_FOOT_TO_POSE, IBUG68_TO_FACE_MESH, NUM_KEYPOINTS, PARTS

FOOT_ROWS = tuple(i for i in COCO_FOOT_TO_POSE if i >= 0)
BODY_ROWS = tuple(i for i in range(PARTS["pose"].stop) if i not in FOOT_ROWS)
FACE68_ROWS = tuple(PARTS["face"].start + i for i in IBUG68_TO_FACE_MESH)
METRIC_PARTS = {
    "body": BODY_ROWS, "foot": FOOT_ROWS, "face": FACE68_ROWS,
    "left_hand": tuple(range(PARTS["left_hand"].start, PARTS["left_hand"].stop)),
    "right_hand": tuple(range(PARTS["right_hand"].start, PARTS["right_hand"].stop)),
}
BODY_PCK_ALPHA = 0.1
HAND_PCK_ALPHA = 0.2
IBUG_OUTER_EYE_CORNERS = (36, 45)


def point_errors_px(pred_px: np.ndarray, gt_px: np.ndarray) -> np.ndarray:
    """Euclidean pixel error per point; inf where the prediction is missing (NaN)."""
    error = np.linalg.norm(np.asarray(pred_px, np.float64) - np.asarray(gt_px, np.float64), axis=-1)
    return np.where(np.isnan(error), np.inf, error)


def within(errors_px: np.ndarray, norm_px: float, alpha: float) -> np.ndarray:
    """Per point: is the error at most alpha x norm_px (missing points, error inf, are not)."""
    return np.asarray(errors_px) <= alpha * norm_px


def pck(errors_px: np.ndarray, norm_px: float, alpha: float) -> float:
    """Share of points with error <= alpha x norm_px (missing points count as wrong)."""
    errors_px = np.asarray(errors_px)
    if errors_px.size == 0:
        raise ValueError("pck of no points")
    return float(within(errors_px, norm_px, alpha).mean())


def face_nme_per_point(pred68_px: np.ndarray, gt68_px: np.ndarray) -> np.ndarray:
    """(68,) error of each iBUG point / the inter-ocular distance (outer eye corners)."""
    gt68_px = np.asarray(gt68_px, np.float64)
    if gt68_px.shape != (68, 2):
        raise ValueError(f"face NME needs (68, 2) annotated points, got {gt68_px.shape}")
    a, b = IBUG_OUTER_EYE_CORNERS
    interocular = np.linalg.norm(gt68_px[a] - gt68_px[b])
    if not interocular > 0:
        raise ValueError("face NME: the annotated outer eye corners coincide or are missing")
    return np.linalg.norm(np.asarray(pred68_px, np.float64) - gt68_px, axis=-1) / interocular


def oks_ap(gt_coco: dict, detections: list[dict], sigmas=None) -> dict[str, float]:
    """COCO keypoint AP/AR of `detections` (COCO results format) against `gt_coco`, by xtcocotools."""
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    if not detections:
        return {"AP": 0.0, "AP50": 0.0, "AR": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_coco
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "keypoints", np.asarray(sigmas) if sigmas is not None else None, use_area=True)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(0.0, float(s)) for s in evaluator.stats]
    return {"AP": stats[0], "AP50": stats[1], "AR": stats[5]}


@dataclass
class MetricTable:
    """Rows of metrics (dicts with the same keys) with a markdown renderer."""
    rows: list[dict]
    details: dict = field(default_factory=dict, repr=False)

    def columns(self) -> list[str]:
        names: list[str] = []
        for row in self.rows:
            names += [k for k in row if k not in names]
        return names

    def to_markdown(self, digits: int = 3) -> str:
        def cell(value):
            if value is None:
                return "-"
            if isinstance(value, float):
                return f"{value:.{digits}f}"
            return str(value)

        names = self.columns()
        lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
        lines += ["| " + " | ".join(cell(row.get(n)) for n in names) + " |" for row in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.to_markdown()

    def __add__(self, other: "MetricTable") -> "MetricTable":
        return MetricTable(self.rows + other.rows, {**self.details, **other.details})


@dataclass
class _PartScore:
    annotated: int = 0
    found: int = 0
    hits: int = 0
    points: int = 0
    errors_px: list = field(default_factory=list)
    nme_per_point: list = field(default_factory=list)

    def add(self, errors_px: np.ndarray, norm_px: float, alpha: float, found: bool) -> None:
        self.annotated += 1
        self.found += int(found)
        self.hits += int(within(errors_px, norm_px, alpha).sum())
        self.points += errors_px.size
        self.errors_px += [float(e) for e in errors_px if np.isfinite(e)]


def _box_long_side(box) -> float:
    return float(max(box[2], box[3]))


def match_person(pred_px: np.ndarray, samples: list) -> int | None:
    """Index of the annotated person the prediction matches best, None if it shares no point."""
    best, best_cost = None, np.inf
    for index, sample in enumerate(samples):
        gt = sample.pixels()
        shared = np.isfinite(gt).all(axis=1) & np.isfinite(pred_px).all(axis=1)
        if not shared.any():
            continue
        scale = _box_long_side(sample.boxes.get("body") or box_of_points(gt[sample.mask]))
        cost = np.linalg.norm(pred_px[shared] - gt[shared], axis=1).mean() / max(scale, 1.0)
        if cost < best_cost:
            best, best_cost = index, cost
    return best


def _score_person(scores: dict, sample, pred_px: np.ndarray, body_alpha: float, hand_alpha: float) -> None:
    gt = sample.pixels()
    for part, rows in METRIC_PARTS.items():
        rows = np.array(rows)
        known = sample.mask[rows]
        if not known.any():
            continue
        errors = point_errors_px(pred_px[rows[known]], gt[rows[known]])
        found = bool(np.isfinite(errors).any())
        score = scores.setdefault(part, _PartScore())
        if part in ("body", "foot"):
            box = sample.boxes.get("body") or box_of_points(gt[sample.mask])
            score.add(errors, _box_long_side(box), body_alpha, found)
        elif part == "face":
            if known.all() and found:
                score.nme_per_point.append(face_nme_per_point(pred_px[rows], gt[rows]))
            score.add(errors, np.inf, 1.0, found)  # the face is scored by NME, not PCK
        else:
            box = sample.boxes.get(part) or box_of_points(gt[rows[known]])
            score.add(errors, _box_long_side(box), hand_alpha, found)


def _rows(dataset_name: str, scores: dict, body_alpha: float, hand_alpha: float) -> list[dict]:
    rows = []
    for part, score in scores.items():
        row = {"dataset": dataset_name, "part": part, "found": f"{score.found}/{score.annotated}"}
        if part == "face":
            nme = np.concatenate(score.nme_per_point) if score.nme_per_point else np.array([])
            row["NME"] = float(nme.mean()) if nme.size else None
        else:
            alpha = hand_alpha if part.endswith("hand") else body_alpha
            row[f"PCK@{alpha:g}"] = score.hits / score.points
        row["EPE px"] = float(np.mean(score.errors_px)) if score.errors_px else None
        rows.append(row)
    return rows


def _coco17(sample_px: np.ndarray) -> np.ndarray:
    return sample_px[np.array(COCO_BODY_TO_POSE)]


def _body_ap(dataset, predictions: dict) -> dict[str, float]:
    """OKS AP of the body-17 predictions over every annotated person of a COCO-17 style set."""
    images, annotations, detections = {}, [], []
    for sample in dataset.samples:
        image = sample.extras["image"]
        images[image["id"]] = {k: image[k] for k in ("id", "file_name", "width", "height")}
        raw = sample.extras["annotation"]
        keypoints = np.asarray(sample.source_keypoints[:17], np.float64)
        annotations.append({"id": sample.ann_id, "image_id": sample.image_id, "category_id": 1,
                            "keypoints": keypoints.ravel().tolist(), "num_keypoints": int((keypoints[:, 2] > 0).sum()),
                            "bbox": list(raw["bbox"]), "area": float(raw.get("area", raw["bbox"][2] * raw["bbox"][3])),
                            "iscrowd": int(raw.get("iscrowd", 0))})
    for image_id, result in predictions.items():
        if result is None or not result.present["pose"]:
            continue
        px = _coco17(result.pixels())
        visibility = result.visibility[np.array(COCO_BODY_TO_POSE)]
        keypoints = np.concatenate([px, np.ones((17, 1))], axis=1)
        detections.append({"image_id": image_id, "category_id": 1, "keypoints": keypoints.ravel().tolist(),
                           "score": float(visibility.mean())})
    gt = {"images": list(images.values()), "annotations": annotations,
          "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    return oks_ap(gt, detections)


def evaluate(model, dataset, body_alpha: float = BODY_PCK_ALPHA, hand_alpha: float = HAND_PCK_ALPHA,
             progress: bool = False) -> MetricTable:
    """Run `model` over a fixture set (a FixtureSet or its name) and score it per part.

    Whole-body, body and face sets: `model.process(rgb)` once per image. Hand sets (hand
    crops): `model.process_hand(rgb, box, side)` per annotated hand, `box` the annotated
    hand box. The table has one row per part (body, foot, face, left_hand, right_hand as
    annotated), plus OKS AP for COCO-17 style sets; `details["<set>/face_nme_per_point"]`
    holds the (faces, 68) per-point NMEs.
    """
    from tqdm.auto import tqdm

    from .datasets import FixtureSet, load_fixture

    if isinstance(dataset, str):
        dataset = load_fixture(dataset)
    if not isinstance(dataset, FixtureSet):
        raise ValueError(f"dataset must be a FixtureSet or a fixture name, got {type(dataset).__name__}")
    scores: dict[str, _PartScore] = {}
    predictions = {}
    for image_path, people in tqdm(dataset.by_image().items(), desc=dataset.name, disable=not progress):
        rgb = load_rgb(image_path)
        if dataset.kind == "hand":
            for sample in people:
                side = "left" if sample.parts_present()["left_hand"] else "right"
                x, y, w, h = sample.boxes[f"{side}_hand"]
                pred = np.full((NUM_KEYPOINTS, 3), np.nan, np.float32)
                pred[PARTS[f"{side}_hand"]] = model.process_hand(rgb, (x, y, x + w, y + h), side)
                _score_person(scores, sample, pred[:, :2] * [sample.width, sample.height], body_alpha, hand_alpha)
            continue
        result = model.process(rgb)
        predictions[people[0].image_id] = result
        pred_px = result.pixels().astype(np.float64)
        matched = match_person(pred_px, people)
        if matched is None:
            for sample in people[:1]:  # nothing found: the image's first person counts as missed
                _score_person(scores, sample, np.full_like(pred_px, np.nan), body_alpha, hand_alpha)
            continue
        _score_person(scores, people[matched], pred_px, body_alpha, hand_alpha)
    table = MetricTable(_rows(dataset.name, scores, body_alpha, hand_alpha))
    if "face" in scores and scores["face"].nme_per_point:
        table.details[f"{dataset.name}/face_nme_per_point"] = np.stack(scores["face"].nme_per_point)
    if dataset.samples and dataset.samples[0].source in ("coco17", "coco_wholebody"):
        ap = _body_ap(dataset, predictions)
        for row in table.rows:
            if row["part"] == "body":
                row.update({"OKS AP": ap["AP"], "AP50": ap["AP50"]})
    return table


def evaluate_fixtures(model, names=None, progress: bool = False) -> MetricTable:
    """`evaluate` over several fixture sets (default: all of them), one table."""
    from .datasets import fixture_names

    tables = [evaluate(model, name, progress=progress) for name in (names or fixture_names())]
    table = tables[0]
    for other in tables[1:]:
        table = table + other
    return table


def face_mapping_error(table: MetricTable) -> np.ndarray:
    """(68,) mean NME per iBUG point over every face scored in `table`: how well the mapped
    mesh vertices sit on the human 68 points (teacher error and mapping error together)."""
    per_face = [v for k, v in table.details.items() if k.endswith("/face_nme_per_point")]
    if not per_face:
        raise ValueError("the table scored no face: evaluate a face or whole-body set first")
    return np.concatenate(per_face).mean(axis=0)
