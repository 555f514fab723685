"""Did fine-tuning help? The shipped and a fine-tuned landmark model on held-out human labels,
clean and under a target domain's degradation, with a paired bootstrap interval.

    cases = human_cases("hands")                      # FreiHAND, Panoptic, COCO-WholeBody hands (pose: COCO,
                                                      # AI Challenger, PoseTrack bodies)
    table = compare_models({"shipped": shipped, "fine-tuned": model}, cases, "hands", preset="low_light")
    table.summary()                                   # per model and condition: mean error, PCK, n

Each case is one labelled part, cropped exactly as the cascade's tracking crops it (the ROI
from the human points for hands and bodies; for faces, whose 68 human points do not span the 468-point
box, from the shipped model's mesh on the clean image, refined once, as tracking does). Both
models see the same crop; the degraded condition applies the preset's appearance part to it
(`data.split_preset`), `draws` seeded draws per case, the same draws for every model.

Metrics per case (normalised so hands and faces of any size count alike):
  hands  error = mean point error / long side of the labelled hand's box; PCK@0.2 on the same norm
  face   NME   = mean error over the labelled iBUG-68 points / outer-eye-corner distance, the
                 mesh read at `topology.IBUG68_TO_FACE_MESH` (its mapping error is in both models' numbers)
  pose   error = mean error over the labelled body points / torso length (shoulder midpoint to hip
                 midpoint); the ROI from the labels is BlazePose's from rebuilt auxiliary points
                 (`data.pose_auxiliary_from_landmarks`), near the tracked one, not equal to it
The interval of a difference is a paired bootstrap over images (resampling whole images, so two
hands of one photograph count as one draw; never the degradation draws). A face counts only if the
shipped model finds a mesh on the clean image (its ROI needs one), so face numbers are conditional
on that; dlib's 68 points were fitted by dlib's shape predictor (reference points, not human labels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..augment import make_augmenter
from ..formats.sample import Sample
from ..images import load_rgb
from ..pipeline.roi import Rect
from ..result import HolisticResult
from ..topology import IBUG68_TO_FACE_MESH, PARTS
from .data import HAND_SIDES, ModuleCrop, degrade_crop, module_crop, part_result, split_preset
from .modules import train_module

HAND_PCK_ALPHA = 0.2
HAND_SETS = ("freihand", "panoptic", "coco_wholebody")
FACE_SETS = ("dlib_faces", "300w", "coco_wholebody")
POSE_SETS = ("coco", "aic", "posetrack18")   # coco_wholebody's bodies are coco's people again


@dataclass
class Case:
    """One human-labelled part: its crop, the labels in image pixels and what normalises errors."""
    source: str             # fixture set
    crop: ModuleCrop
    labels_px: np.ndarray   # (n, 2) the part's human points in image pixels (NaN unknown)
    rows: np.ndarray        # part-local indices of the points that are scored
    norm_px: float          # hand box long side or interocular distance
    image_size: tuple[int, int]
    image: str = ""         # the image it is in: the bootstrap resamples images, not parts


def _part_pixels(sample: Sample, part: str) -> np.ndarray:
    xy = sample.xyz[PARTS[part], :2].astype(np.float64) * [sample.width, sample.height]
    return np.where(sample.mask[PARTS[part], None], xy, np.nan)


def _hand_case(source: str, rgb: np.ndarray, sample: Sample, side: str) -> Case | None:
    crop = module_crop(rgb, sample, "hands", side)
    if crop is None:
        return None
    labels = _part_pixels(sample, side)
    rows = np.flatnonzero(np.isfinite(labels).all(1))
    box = labels[rows]
    return Case(source, crop, labels, rows, float((box.max(0) - box.min(0)).max()), (sample.width, sample.height))


def face_roi_labels(rgb: np.ndarray, sample: Sample, face_stage=None) -> HolisticResult | None:
    """The shipped face model's mesh on the clean image, as the ROI of a 68-point face: a first
    ROI from the 68 points' box (levelled on the outer eye corners, 1.5 x its long side, like
    the detector's), then the mesh's own tracking ROI, as the cascade refines it."""
    from ..pipeline.stages import FaceLandmark, face_rect_from_landmarks

    stage = face_stage or FaceLandmark()
    labels = _part_pixels(sample, "face")
    mesh_rows = np.asarray(IBUG68_TO_FACE_MESH)
    points = labels[mesh_rows]
    if not np.isfinite(points).all():
        return None
    left, right = points[36], points[45]
    angle = -np.arctan2(right[1] - left[1], right[0] - left[0])
    centre, side = (points.min(0) + points.max(0)) / 2, (points.max(0) - points.min(0)).max() * 1.5
    rect = Rect(centre[0] / sample.width, centre[1] / sample.height, side / sample.width, side / sample.height,
                -angle)
    size = (sample.width, sample.height)
    mesh = stage.landmarks(stage.crop(rgb, rect))
    if mesh is None:
        return None
    mesh = stage.landmarks(stage.crop(rgb, face_rect_from_landmarks(mesh, size)))
    if mesh is None:
        return None
    return part_result("face", mesh, sample.width, sample.height)


def _face_case(source: str, rgb: np.ndarray, sample: Sample, face_stage) -> Case | None:
    roi = face_roi_labels(rgb, sample, face_stage)
    if roi is None:
        return None
    crop = module_crop(rgb, sample, "face_mesh", roi_labels=roi)
    if crop is None:
        return None
    labels = _part_pixels(sample, "face")
    rows = np.asarray(IBUG68_TO_FACE_MESH)
    interocular = float(np.linalg.norm(labels[rows[36]] - labels[rows[45]]))
    return Case(source, crop, labels, rows, interocular, (sample.width, sample.height))


def _pose_case(source: str, rgb: np.ndarray, sample: Sample) -> Case | None:
    crop = module_crop(rgb, sample, "pose")
    if crop is None:
        return None
    labels = _part_pixels(sample, "pose")
    rows = np.flatnonzero(np.isfinite(labels).all(1))
    torso = float(np.linalg.norm(labels[[11, 12]].mean(0) - labels[[23, 24]].mean(0)))
    return Case(source, crop, labels, rows, torso, (sample.width, sample.height))


def human_cases(module: str, sets: tuple[str, ...] | None = None, limit: int | None = None) -> list[Case]:
    """Every usable human-labelled hand ("hands"), face ("face_mesh") or body ("pose") of the fixture packs."""
    from .. import datasets
    from ..pipeline.stages import FaceLandmark

    default_sets = {"hands": HAND_SETS, "face_mesh": FACE_SETS, "pose": POSE_SETS}
    if module not in default_sets:
        raise ValueError(f"human_cases: module must be one of {tuple(default_sets)}, got {module!r}")
    sets = sets or default_sets[module]
    face_stage = FaceLandmark() if module == "face_mesh" else None
    cases: list[Case] = []
    for name in sets:
        fixture = datasets.load_dlib_faces() if name == "dlib_faces" else datasets.load_fixture(name)
        for path, samples in fixture.by_image().items():
            rgb = load_rgb(path)
            for sample in samples:
                if module == "hands":
                    found = [_hand_case(name, rgb, sample, side) for side in HAND_SIDES]
                elif module == "pose":
                    found = [_pose_case(name, rgb, sample)]
                else:
                    found = [_face_case(name, rgb, sample, face_stage)]
                for case in found:
                    if case is not None:
                        case.image = str(path)
                        cases.append(case)
                if limit is not None and len(cases) >= limit:
                    return cases[:limit]
    return cases


# --- scoring --------------------------------------------------------------------------------

def predicted_points(model, inputs: np.ndarray, module: str) -> np.ndarray:
    """(B, n, 3) raw landmark output of a Keras model for a batch of crops."""
    from .losses import named_outputs

    spec = train_module(module)
    points = np.asarray(named_outputs(model, inputs.astype(np.float32))[spec.landmarks_output], np.float32)
    return points.reshape(len(inputs), spec.num_points, spec.values_per_point)[..., :3]


def case_errors(case: Case, raw_points: np.ndarray) -> np.ndarray:
    """Normalised error of each scored point for one prediction (raw model units)."""
    n = PARTS[case.crop.part].stop - PARTS[case.crop.part].start
    width, height = case.image_size
    predicted = case.crop.to_image(raw_points[:n])[:, :2] * [width, height]
    return np.linalg.norm(predicted[case.rows] - case.labels_px[case.rows], axis=1) / case.norm_px


def case_inputs(cases: list[Case], preset: str | None, draws: int, seed: int = 0) -> np.ndarray:
    """(draws, cases, S, S, 3): each case's crop, clean (preset None) or degraded by the preset's
    appearance part; draw d of case i uses seed (seed, d, i), the same for every model."""
    if preset is None:
        return np.stack([case.crop.input for case in cases])[None]
    _, appearance = split_preset(preset)
    out = []
    for draw in range(draws):
        row = []
        for index, case in enumerate(cases):
            augmenter = make_augmenter(appearance, seed=seed * 1_000_003 + draw * 10_007 + index)
            row.append(degrade_crop(case.crop, augmenter).input)
        out.append(np.stack(row))
    return np.stack(out)


def score_model(model, cases: list[Case], module: str, inputs: np.ndarray, batch_size: int = 16) -> dict:
    """Per case: mean normalised error and PCK (hands), averaged over the draws in `inputs`."""
    errors = np.zeros((inputs.shape[0], len(cases)))
    pck = np.zeros_like(errors)
    for draw, batch in enumerate(inputs):
        raw = np.concatenate([predicted_points(model, batch[i:i + batch_size], module)
                              for i in range(0, len(batch), batch_size)])
        for index, case in enumerate(cases):
            point_errors = case_errors(case, raw[index])
            errors[draw, index] = point_errors.mean()
            pck[draw, index] = (point_errors <= HAND_PCK_ALPHA).mean()
    return {"error": errors.mean(0), "pck": pck.mean(0)}


def bootstrap_interval(values: np.ndarray, groups=None, repeats: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`. With `groups` (one label per value,
    e.g. its image) whole groups are resampled: two hands of one photograph are not two
    independent draws, and resampling them apart would make the interval too narrow."""
    values = np.asarray(values, np.float64)
    groups = np.arange(len(values)) if groups is None else np.asarray(groups)
    if len(groups) != len(values):
        raise ValueError(f"groups: {len(groups)} labels for {len(values)} values")
    _, group_index = np.unique(groups, return_inverse=True)
    sums = np.bincount(group_index, values)
    counts = np.bincount(group_index).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), (repeats, len(sums)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


@dataclass
class Comparison:
    module: str
    conditions: dict[str, dict[str, dict]]   # condition -> model -> {"error": (cases,), "pck": (cases,)}
    sources: list[str]
    images: list[str]

    @property
    def n(self) -> int:
        return len(self.sources)

    def rows(self, baseline: str = "shipped") -> list[dict]:
        """One row per condition and model: mean error with its 95% interval, and the paired
        change against `baseline` with its interval (negative: fewer errors)."""
        out = []
        for condition, models in self.conditions.items():
            reference = models[baseline]["error"]
            for name, scores in models.items():
                low, high = bootstrap_interval(scores["error"], self.images)
                row = {"condition": condition, "model": name, "n": self.n, "error": float(scores["error"].mean()),
                       "error_ci": (low, high)}
                if self.module == "hands":
                    row["pck"] = float(scores["pck"].mean())
                if name != baseline:
                    change = scores["error"] - reference
                    row["change"] = float(change.mean())
                    row["change_ci"] = bootstrap_interval(change, self.images)
                    row["relative_change"] = float(change.mean() / reference.mean())
                out.append(row)
        return out

    def summary(self, baseline: str = "shipped") -> str:
        metric = {"hands": "error / hand size", "pose": "error / torso length"}.get(self.module, "NME (interocular)")
        counts = ", ".join(f"{source} {self.sources.count(source)}" for source in dict.fromkeys(self.sources))
        lines = [f"{self.module}: {metric}, n = {self.n} parts in {len(set(self.images))} images ({counts}), "
                 f"mean [95% bootstrap interval, images resampled]"]
        for row in self.rows(baseline):
            text = f"  {row['condition']:>9s}  {row['model']:>14s}  {row['error']:.4f} [{row['error_ci'][0]:.4f}, " \
                   f"{row['error_ci'][1]:.4f}]"
            if "pck" in row:
                text += f"  PCK@0.2 {row['pck']:.3f}"
            if "change" in row:
                text += (f"  vs {baseline}: {row['relative_change']:+.1%} "
                         f"[{row['change_ci'][0]:+.4f}, {row['change_ci'][1]:+.4f}]")
            lines.append(text)
        return "\n".join(lines)


def compare_models(models: dict, cases: list[Case], module: str, preset, draws: int = 3, seed: int = 0,
                   condition: str | None = None) -> Comparison:
    """Every model on the cases, clean and degraded by `preset` (a name or AugmentParams; the
    same inputs for all), the degraded condition named `condition` (default: the preset's name)."""
    if not cases:
        raise ValueError(f"no human-labelled {module} cases to evaluate on")
    conditions = {}
    for condition, inputs in (("clean", case_inputs(cases, None, 1)),
                              (condition or (preset if isinstance(preset, str) else "degraded"),
                               case_inputs(cases, preset, draws, seed))):
        conditions[condition] = {name: score_model(model, cases, module, inputs) for name, model in models.items()}
    return Comparison(module, conditions, [case.source for case in cases],
                      [case.image or str(index) for index, case in enumerate(cases)])
