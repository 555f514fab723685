"""The single-pass network beside the whole cascade, in one run: latency, size, accuracy per part
on human annotations, and the explanation in pixels.

    comparison = measure_single_pass("out/single_pass/single_pass.tflite")
    print(comparison.summary())          # the table notebook 06 shows
    comparison.rows()                    # the same numbers, one dict per part and method

Protocol. The human labels are the mmpose pack's COCO-WholeBody people (the only images here
with body, face and hand labels together; training never sees them, `single_pass_data`). Each
labelled person is cut out of the photograph (the box around the pose ROI of their labelled
body), so the cascade, which follows the most prominent person, looks at that person. On that
same image the cascade runs whole (static image mode) and the single pass runs on the cascade's
own pose crop (`SinglePassPipeline.process_crop`: the exact tensor the cascade's pose stage
saw), so both get the same pose ROI and differ only in how face and hands are found.

Errors, normalised so that people of any size count alike (face and hands as chapter 05's
`evaluate`; the body by the shoulder-to-opposite-hip diagonal, where `evaluate` takes the
shoulder-midpoint-to-hip-midpoint length: the two are not comparable across chapters):
  body   mean error over the labelled COCO-17 points / torso (left shoulder to right hip); PCK@0.2
  face   NME: mean error over the 68 labelled points (mesh read at IBUG68_TO_FACE_MESH) / outer
         eye corners
  hands  mean error over the 21 points / the labelled hand's box long side; PCK@0.2
The cascade is scored where it found the part (its misses are counted), the single pass on every
labelled part of a person whose pose was found, whatever its presence logit says; the paired
difference uses the parts both were scored on.
The single pass's body is the pose model's raw regression (the cascade refines it on the heatmap). Intervals: bootstrap over images (`evaluate.bootstrap_interval`).

Latency: the TFLite interpreter, 1 thread, warm-up then `repeats` runs of each image, the two
methods alternating; end to end each is a full image -> 543 points (the single pass needs the
pose detector for its ROI too), and the models alone (the cascade's per-stage inference times
summed). Size: the .tflite bytes of each (the shipped files store float16 weights).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..images import load_rgb
from ..mediapipe_models import resolve_model
from ..pipeline.roi import Crop
from ..result import HolisticResult
from ..topology import IBUG68_TO_FACE_MESH, NUM_KEYPOINTS, PARTS
from .data import module_crop
from .evaluate import HAND_PCK_ALPHA, bootstrap_interval
from .single_pass import INPUT_SIZE, PRESENCE_PARTS

BODY_PCK_ALPHA = 0.2
CASCADE_CROP_PX = {"face": 192, "left_hand": 224, "right_hand": 224}
METHODS = ("cascade", "single_pass")
SCORED_PARTS = ("pose", "face", "left_hand", "right_hand")


class SinglePassPipeline:
    """The single-pass network as a pipeline: pose detection -> pose ROI -> one forward pass -> 543
    points (`process(rgb) -> HolisticResult`, `last_timings` in ms). A part is present where its
    presence logit is above 0 (probability 0.5), the pose where the pose model's flag is above 0.5."""

    def __init__(self, model, num_threads: int = 1, min_detection_confidence: float = 0.5):
        from ..pipeline.runners import make_runner
        from ..pipeline.stages import PoseDetection

        self.runner = make_runner(model, "single_pass", num_threads)
        self.pose_detection = PoseDetection(None, num_threads, min_score=min_detection_confidence)
        self.last_timings: dict[str, float] = {}

    def process(self, rgb: np.ndarray) -> HolisticResult:
        from ..images import check_rgb
        from ..pipeline.roi import crop
        from ..pipeline.stages import pose_rect_from_detection

        check_rgb(rgb)
        start = time.perf_counter()
        height, width = rgb.shape[:2]
        detections = self.pose_detection.detect(self.pose_detection.crop(rgb))
        self.last_timings = {"pose_detection": self.pose_detection.last_inference_ms}
        if not detections:
            result = HolisticResult.empty(width, height)
        else:
            rect = pose_rect_from_detection(detections[0], (width, height))
            result = self.process_crop(crop(rgb, rect, (INPUT_SIZE, INPUT_SIZE), keep_aspect=True), (width, height))
        self.last_timings["total"] = (time.perf_counter() - start) * 1e3
        return result

    def process_crop(self, pose_crop: Crop, image_size) -> HolisticResult:
        """The 543 points from one pose crop (256x256, as `PoseLandmark.crop` cuts it)."""
        from ..pipeline.roi import project_landmarks

        if pose_crop.tensor.shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"pose_crop: expected a (1, {INPUT_SIZE}, {INPUT_SIZE}, 3) tensor, got {pose_crop.tensor.shape}")
        start = time.perf_counter()
        outputs = self.runner(pose_crop.tensor)
        self.last_timings["single_pass"] = (time.perf_counter() - start) * 1e3
        pose_flag, keypoints, presence = outputs[1], outputs[5], outputs[6]
        result = HolisticResult.empty(*image_size)
        if not float(np.ravel(pose_flag)[0]) > 0.5:
            return result
        xyz = project_landmarks(np.reshape(keypoints, (NUM_KEYPOINTS, 3)) / INPUT_SIZE, pose_crop.rect,
                                pose_crop.padding)
        result.set_part("pose", xyz[PARTS["pose"]])
        for part, logit in zip(PRESENCE_PARTS, np.ravel(presence)):
            if logit > 0:
                result.set_part(part, xyz[PARTS[part]])
        result.extras["all_points"] = xyz   # every part, present or not (the scores use the cascade's parts)
        return result


# --- the evaluation people ---------------------------------------------------------------------

@dataclass
class Person:
    """One human-labelled person cut out of its photograph: the cut image, the labels in its pixels."""
    image: str
    rgb: np.ndarray
    labels_px: np.ndarray     # (543, 2) image pixels of the cut, NaN where not labelled


def evaluation_people(limit: int | None = None) -> list[Person]:
    """Every COCO-WholeBody person of the pack whose labelled body places a pose ROI."""
    from .. import datasets
    from .single_pass_data import EVALUATION_SET

    people = []
    for path, samples in datasets.load_fixture(EVALUATION_SET).by_image().items():
        rgb = load_rgb(path)
        height, width = rgb.shape[:2]
        for sample in samples:
            pose = module_crop(rgb, sample, "pose")
            if pose is None:
                continue
            corners = pose.roi.corners_px((width, height))
            left, top = np.floor(np.clip(corners.min(0), 0, [width, height])).astype(int)
            right, bottom = np.ceil(np.clip(corners.max(0), 0, [width, height])).astype(int)
            labels = np.where(sample.mask[:, None], sample.xyz[:, :2] * [width, height], np.nan) - [left, top]
            people.append(Person(str(path), np.ascontiguousarray(rgb[top:bottom, left:right]), labels))
            if limit is not None and len(people) >= limit:
                return people
    return people


def part_error(part: str, predicted_px: np.ndarray, labels_px: np.ndarray) -> tuple[float, float, float] | None:
    """(normalised mean error, PCK, norm in pixels) of one part, or None when its labels cannot be
    scored (no torso, not all 68 face points, fewer than 2 hand points). PCK is NaN for the face."""
    labels = labels_px[PARTS[part]]
    predicted = predicted_px[PARTS[part]]
    if part == "pose":
        if not np.isfinite(labels[[11, 24]]).all():
            return None
        norm, rows, alpha = float(np.linalg.norm(labels[11] - labels[24])), np.flatnonzero(np.isfinite(labels).all(1)), BODY_PCK_ALPHA
    elif part == "face":
        rows = np.asarray(IBUG68_TO_FACE_MESH)
        if not np.isfinite(labels[rows]).all():
            return None
        norm, alpha = float(np.linalg.norm(labels[rows[36]] - labels[rows[45]])), None
    else:
        rows = np.flatnonzero(np.isfinite(labels).all(1))
        if len(rows) < 2:
            return None
        norm, alpha = float((labels[rows].max(0) - labels[rows].min(0)).max()), HAND_PCK_ALPHA
    if not norm > 0:
        return None
    errors = np.linalg.norm(predicted[rows] - labels[rows], axis=1) / norm
    return float(errors.mean()), float((errors <= alpha).mean()) if alpha else float("nan"), norm


def part_box_px(part: str, labels_px: np.ndarray) -> float:
    """Long side of the labelled part's box in image pixels (NaN with fewer than 2 labelled points)."""
    labels = labels_px[PARTS[part]]
    labels = labels[np.isfinite(labels).all(1)]
    return float((labels.max(0) - labels.min(0)).max()) if len(labels) >= 2 else float("nan")


def teacher_fit(model, items, batch_size: int = 8) -> dict[str, dict]:
    """How closely the network gives its teacher's points on (rgb, cascade labels) pairs, in the
    256 px pose crop: per part, n crops where the cascade found it, the median of the mean point
    error (px) and of the part's box long side (px). On training images it says whether a poor
    result is a fit that never happened or a gap to new images."""
    from .losses import named_outputs
    from .single_pass_data import iter_single_pass_crops

    crops = list(iter_single_pass_crops(items))
    if not crops:
        raise ValueError("items: no pair whose labelled pose places a pose crop")
    keypoints = np.concatenate([np.asarray(named_outputs(model, np.stack([c.input for c in crops[i:i + batch_size]]))
                                           ["keypoints"]) for i in range(0, len(crops), batch_size)])
    fit = {}
    for part in PRESENCE_PARTS:
        rows = PARTS[part]
        found = [(c.points[rows, :2], k[rows, :2]) for c, k in zip(crops, keypoints) if c.mask[rows].all()]
        fit[part] = {"n": len(found),
                     "median_error_px": float(np.median([np.linalg.norm(p - t, axis=1).mean() for t, p in found]))
                     if found else float("nan"),
                     "median_size_px": float(np.median([(t.max(0) - t.min(0)).max() for t, _ in found]))
                     if found else float("nan")}
    return fit


# --- the measurement ---------------------------------------------------------------------------

@dataclass
class SinglePassComparison:
    people: int
    scores: dict              # part -> {"cascade", "single_pass", "pck_cascade", "pck_single_pass": (n,) NaN where
                              #          not scored, "images": (n,)}
    missed: dict              # part -> parts labelled that the cascade did not find
    presence: dict            # part -> [(cascade found it, single pass says present)] per scored labelled part
    sizes_px: dict            # part -> {"single_pass_crop": [...], "cascade_crop": [...], "image": [...]}
    latency_ms: dict          # name -> {"median": ..., "p90": ..., "n": ...}
    size_bytes: dict
    machine: str = ""
    notes: list = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Per part and method: n (parts it was scored on: the cascade where it found the part, the
        single pass wherever the pose was found), mean error [95% interval], PCK; for the single pass
        the paired change against the cascade on the parts both were scored on."""
        out = []
        for part, table in self.scores.items():
            images = np.asarray(table["images"])
            cascade = np.asarray(table["cascade"], np.float64)
            for method in METHODS:
                error = np.asarray(table[method], np.float64)
                scored = np.isfinite(error)
                if not scored.any():
                    continue
                row = {"part": part, "method": method, "n": int(scored.sum()), "images": len(set(images[scored])),
                       "error": float(error[scored].mean()), "error_ci": bootstrap_interval(error[scored], images[scored]),
                       "pck": None if part == "face" else float(np.mean(np.asarray(table[f"pck_{method}"])[scored]))}
                both = scored & np.isfinite(cascade)
                if method == "single_pass" and both.any():
                    change = error[both] - cascade[both]
                    row["paired_n"], row["change"] = int(both.sum()), float(change.mean())
                    row["change_ci"] = bootstrap_interval(change, images[both])
                out.append(row)
        return out

    def size_rows(self) -> list[dict]:
        """Per part: median long side of its labelled box, in the 256 px pose crop and in the cascade's own crop."""
        return [{"part": part, "n": len(sizes["single_pass_crop"]),
                 "single_pass_crop_px": float(np.median(sizes["single_pass_crop"])),
                 "cascade_crop_px": float(np.median(sizes["cascade_crop"])), "cascade_input_px": CASCADE_CROP_PX[part],
                 "image_px": float(np.median(sizes["image"]))}
                for part, sizes in self.sizes_px.items() if sizes["single_pass_crop"]]

    def summary(self) -> str:
        lines = [f"single pass vs cascade on {self.people} COCO-WholeBody people ({self.machine})",
                 "accuracy (mean normalised error [95% bootstrap interval over images]; lower is better):"]
        metric = {"pose": "error/torso", "face": "NME", "left_hand": "error/hand", "right_hand": "error/hand"}
        for row in self.rows():
            text = (f"  {row['part']:>10s} {metric[row['part']]:>11s} {row['method']:>11s}  n={row['n']:2d} "
                    f"({row['images']} images)  {row['error']:.3f} [{row['error_ci'][0]:.3f}, {row['error_ci'][1]:.3f}]")
            if row["pck"] is not None:
                text += f"  PCK@0.2 {row['pck']:.2f}"
            if "change" in row:
                text += (f"  vs cascade (paired, n={row['paired_n']}) {row['change']:+.3f} "
                         f"[{row['change_ci'][0]:+.3f}, {row['change_ci'][1]:+.3f}]")
            lines.append(text)
        lines.append("  labelled parts the cascade did not find (no cascade score): "
                     + ", ".join(f"{part} {count}" for part, count in self.missed.items()))
        lines.append("  labelled parts each says are present (of those scored): " + ", ".join(
            f"{part} cascade {sum(c for c, _ in found)}/{len(found)}, single pass {sum(s for _, s in found)}/{len(found)}"
            for part, found in self.presence.items() if found))
        lines.append("part size, median long side of the labelled box (px):")
        for row in self.size_rows():
            lines.append(f"  {row['part']:>10s}  n={row['n']:2d}  in the 256 px pose crop {row['single_pass_crop_px']:5.1f}"
                         f"   in the cascade's {row['cascade_input_px']} px crop {row['cascade_crop_px']:5.1f}"
                         f"   ({row['cascade_crop_px'] / row['single_pass_crop_px']:.1f}x)")
        lines.append("latency (ms, median / p90, n runs):")
        for name, stats in self.latency_ms.items():
            lines.append(f"  {name:>32s}  {stats['median']:7.2f} / {stats['p90']:7.2f}  n={stats['n']}")
        lines.append("model size (.tflite bytes):")
        for name, size in self.size_bytes.items():
            lines.append(f"  {name:>32s}  {size / 1e6:6.2f} MB")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


    def figure(self):
        """Three panels: error per part (95% intervals), part size in each crop, latency (median, p90)."""
        import matplotlib.pyplot as plt

        fig, (accuracy, sizes, latency) = plt.subplots(1, 3, figsize=(15, 4))
        rows = self.rows()
        parts = list(dict.fromkeys(row["part"] for row in rows))
        for offset, method in ((-0.2, "cascade"), (0.2, "single_pass")):
            chosen = {row["part"]: row for row in rows if row["method"] == method}
            where = [i + offset for i, part in enumerate(parts) if part in chosen]
            errors = [chosen[part]["error"] for part in parts if part in chosen]
            spans = np.array([[chosen[p]["error"] - chosen[p]["error_ci"][0], chosen[p]["error_ci"][1] - chosen[p]["error"]]
                              for p in parts if p in chosen]).T.reshape(2, -1)
            accuracy.bar(where, errors, 0.4, yerr=spans, capsize=3, label=method.replace("_", " "))
        counts = {(row["part"], row["method"]): row["n"] for row in rows}
        accuracy.set_xticks(range(len(parts)), [f"{p}\nn={counts.get((p, 'cascade'), 0)} / {counts.get((p, 'single_pass'), 0)}"
                                                for p in parts])
        accuracy.set_yscale("log")
        accuracy.set(title="error on human labels (n: cascade / single pass)", ylabel="error / torso, eyes or hand (log)")
        accuracy.legend()
        size_rows = self.size_rows()
        for offset, key, label in ((-0.2, "single_pass_crop_px", "in the 256 px pose crop"),
                                   (0.2, "cascade_crop_px", "in the cascade's own crop (192 / 224 px)")):
            sizes.bar([i + offset for i in range(len(size_rows))], [row[key] for row in size_rows], 0.4, label=label)
        sizes.set_xticks(range(len(size_rows)), [row["part"] for row in size_rows])
        sizes.set(title="part size, median labelled box (px)", ylabel="pixels",
                  ylim=(0, 1.35 * max(row["cascade_crop_px"] for row in size_rows)))
        sizes.legend(loc="upper left", fontsize="small")
        names = list(self.latency_ms)
        medians = [self.latency_ms[name]["median"] for name in names]
        p90 = [self.latency_ms[name]["p90"] - self.latency_ms[name]["median"] for name in names]
        latency.barh(names, medians, xerr=[np.zeros(len(names)), p90], capsize=3)
        latency.set(title="latency, median and p90", xlabel=f"ms ({self.machine})")
        fig.tight_layout()
        return fig


def _stats(values) -> dict:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]   # a run where that stage did not run (no person found)
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "n": int(len(values))}


def cascade_model_bytes() -> dict[str, int]:
    """Bytes of each shipped model file the Holistic cascade runs."""
    from ..pipeline.holistic import STAGE_MODELS

    return {name: resolve_model(name).stat().st_size for name in STAGE_MODELS.values()}


def measure_single_pass(model, people: list[Person] | None = None, repeats: int | None = None, warmup: int = 2,
                        latency_images: int | None = None) -> SinglePassComparison:
    """Cascade and single pass (`model`: its .tflite path, or a Keras model for the accuracy only),
    side by side on the same people: accuracy per part, part sizes, latency, size."""
    import platform
    from pathlib import Path

    from ..pipeline import HolisticPipeline
    from ..settings import quick_or

    repeats = quick_or(20, 3) if repeats is None else repeats
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a whole number >= 1, got {repeats!r}")
    people = evaluation_people() if people is None else people
    if not people:
        raise ValueError("people: no human-labelled people to measure on")
    cascade = HolisticPipeline(static_image_mode=True, num_threads=1)
    single = SinglePassPipeline(model, num_threads=1)
    scores = {part: {"cascade": [], "single_pass": [], "pck_cascade": [], "pck_single_pass": [], "images": []}
              for part in SCORED_PARTS}
    missed = dict.fromkeys(SCORED_PARTS, 0)
    presence = {part: [] for part in SCORED_PARTS}
    sizes = {part: {"single_pass_crop": [], "cascade_crop": [], "image": []} for part in CASCADE_CROP_PX}
    found_people = []
    for person in people:
        height, width = person.rgb.shape[:2]
        by_cascade = cascade.process(person.rgb)
        crops = dict(cascade.last_crops)
        pose_crop = crops.get("pose_landmark")
        if pose_crop is None or not by_cascade.present["pose"]:
            missed.update({part: missed[part] + 1 for part in SCORED_PARTS
                           if part_error(part, person.labels_px, person.labels_px) is not None})
            continue
        found_people.append(person)
        by_single = single.process_crop(pose_crop, (width, height))
        # no points only if its pose flag disagrees with the cascade's on the same crop (float16 vs float32 weights)
        all_points = by_single.extras.get("all_points", np.full((NUM_KEYPOINTS, 3), np.nan))
        single_px = all_points[:, :2] * [width, height]
        for part in SCORED_PARTS:
            if part_error(part, person.labels_px, person.labels_px) is None:
                continue
            missed[part] += not by_cascade.present[part]
            found = {"cascade": part_error(part, by_cascade.pixels(), person.labels_px) if by_cascade.present[part]
                     else (np.nan, np.nan, np.nan),
                     "single_pass": part_error(part, single_px, person.labels_px)}
            for method, (error, pck, _) in found.items():
                scores[part][method].append(error)
                scores[part][f"pck_{method}"].append(pck)
            scores[part]["images"].append(person.image)
            presence[part].append((by_cascade.present[part], by_single.present[part]))
            stage_crop = crops.get("face_landmark" if part == "face" else f"{part}_landmark")
            if part in CASCADE_CROP_PX and stage_crop is not None:
                # the cascade cut this part's crop (its model may still have said "no hand")
                box_px = part_box_px(part, person.labels_px)
                sizes[part]["image"].append(box_px)
                sizes[part]["single_pass_crop"].append(box_px * INPUT_SIZE / pose_crop.roi_px.width)
                sizes[part]["cascade_crop"].append(box_px * CASCADE_CROP_PX[part] / stage_crop.roi_px.width)
    latency = {"cascade end to end": [], "single pass end to end": [], "cascade models (sum of stages)": [],
               "single pass model": [], "cascade pose_landmark model": []}
    timed = found_people[:latency_images] if latency_images else found_people
    is_file = isinstance(model, (str, Path))
    for person in timed:
        for run in range(warmup + repeats):
            cascade.process(person.rgb)
            single.process(person.rgb)
            if run >= warmup:
                latency["cascade end to end"].append(cascade.last_timings["total"])
                latency["cascade models (sum of stages)"].append(
                    sum(ms for key, ms in cascade.last_timings.items() if key not in ("total", "pre_post_processing")))
                latency["single pass end to end"].append(single.last_timings["total"])
                latency["single pass model"].append(single.last_timings.get("single_pass", np.nan))
                # the pose model the single pass is built on: what its new heads add
                latency["cascade pose_landmark model"].append(cascade.last_timings.get("pose_landmark", np.nan))
    size_bytes = {f"cascade: {name}": size for name, size in cascade_model_bytes().items()}
    size_bytes["cascade total"] = sum(size_bytes.values())
    notes = ["the shipped .tflite files store float16 weights (the interpreter computes in float32)"]
    if is_file:
        size_bytes["single pass (float32)"] = Path(model).stat().st_size
        float16 = Path(model).with_name("single_pass_float16.tflite")
        if float16.is_file():   # written beside it by save_single_pass: the like-for-like size
            size_bytes["single pass (float16 weights)"] = float16.stat().st_size
            size_bytes["single pass (float16) + pose_detection"] = (float16.stat().st_size
                                                                    + size_bytes["cascade: pose_detection"])
    else:
        notes.append("the single pass ran as a Keras model: its latency is not the interpreter's")
    return SinglePassComparison(len(people), scores, missed, presence, sizes,
                                {name: _stats(values) for name, values in latency.items() if values}, size_bytes,
                                f"{platform.processor() or platform.machine()}, {_cpu_name()}, 1 thread", notes)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
