"""The keypoint explorer: an ipywidgets view of an image, its 543 labels and any augmentation.

Pick an image (a sample portrait, a fixture photo, or an upload), toggle parts and the
face mesh, pick a preset and move every augmentation knob with sliders, and see the
augmented image and labels redrawn; pick a point to see its index, name, mirror twin and
where it went. Every widget event calls a plain method (`select_image`, `upload`,
`set_preset`, `set_param`, `set_parts`, `select_point`, `nearest_point`, ...), so the
explorer is tested without a browser and can be driven from code. The picture is an
`ipywidgets.Image` holding PNG bytes, which survives in a saved notebook's widget state.
ipywidgets' Image reports no clicks, so "the point nearest a position" is `nearest_point(x, y)`.
"""
from __future__ import annotations

import contextlib
import html
import io
from pathlib import Path

import cv2
import numpy as np

from .augment import PRESETS, KeypointAugmenter, build_transforms, preset
from .augment.agreement import AGREEMENT_FIXTURES
from .augment.presets import knob_specs
from .datasets import data_dir, fixture_path, sample_image, sample_labels, sample_names
from .images import IMAGE_SUFFIXES, load_rgb
from .result import HolisticResult
from .topology import FLIP_PERMUTATION, LANDMARK_NAMES, NUM_KEYPOINTS, PART_NAMES, PARTS, part_of
from .viz import draw_cv2

MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF")
_SELECTED_COLOR, _TWIN_COLOR = (255, 255, 255), (255, 0, 255)


def decode_upload(name: str, content: bytes) -> np.ndarray:
    """Decode an uploaded file into uint8 RGB, or raise ValueError saying why it is refused.

    Refused: a name without an image suffix, more than MAX_UPLOAD_BYTES, content that is not
    a PNG/JPEG/BMP/WebP/TIFF image, or more than MAX_UPLOAD_PIXELS pixels (checked from the
    header before anything is decoded, so a decompression bomb costs nothing).
    """
    from PIL import Image, UnidentifiedImageError

    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{name}: not an image file name (suffix {suffix!r}; expected one of {IMAGE_SUFFIXES})")
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name}: {len(content) / 2**20:.1f} MiB is too large (limit {MAX_UPLOAD_BYTES // 2**20} MiB)")
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.format not in UPLOAD_FORMATS:
                raise ValueError(f"{name}: {image.format} images are not accepted; expected one of {UPLOAD_FORMATS}")
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise ValueError(f"{name}: {width}x{height} is too many pixels (limit {MAX_UPLOAD_PIXELS:,})")
            rgb = np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{name}: not a readable image ({type(exc).__name__})") from exc
    if min(rgb.shape[:2]) < 16:
        raise ValueError(f"{name}: {rgb.shape[1]}x{rgb.shape[0]} is too small to hold a person")
    return rgb


def image_choices() -> dict[str, object]:
    """Explorer image name -> sample name or fixture path (only fixtures present on this machine)."""
    choices: dict[str, object] = {f"sample: {name}": name for name in sample_names()}
    if data_dir() is not None:  # never download just to fill a menu
        for relative in AGREEMENT_FIXTURES:
            try:
                choices[f"fixture: {relative}"] = fixture_path(relative)
            except ValueError:  # not in this local copy of the pack
                continue
    return choices


class KeypointExplorer:
    """Interactive explorer; `.widget` is what a notebook displays, the methods are its callbacks.

    `teacher_factory` makes the labeller for fixtures and uploads (MediaPipe Holistic by
    default, created on first need); samples use their stored labels.
    """

    def __init__(self, teacher_factory=None, preset_name: str = "train", seed: int = 0,
                 display_max_side: int = 448):
        self._teacher_factory = teacher_factory
        self._teacher = None
        self._choices = image_choices()
        self._labels_cache: dict[str, HolisticResult] = {}
        self.display_max_side = display_max_side
        self.params = preset(preset_name)
        self.preset_name = preset_name
        self.seed = seed
        self.parts = PART_NAMES
        self.mesh = False
        self.swap_twins = True
        self.point = 0
        self.message = ""
        self._syncing = False
        self._build_widgets()
        self.select_image(next(iter(self._choices)))

    # ----- callbacks: each changes the state, then redraws -----
    def select_image(self, name: str) -> None:
        if name not in self._choices:
            raise ValueError(f"unknown image {name!r}; expected one of {tuple(self._choices)}")
        source = self._choices[name]
        if isinstance(source, np.ndarray):
            rgb = source
        elif isinstance(source, str):
            rgb = sample_image(source)
            self._labels_cache.setdefault(name, sample_labels(source))
        else:
            rgb = load_rgb(source)
        self.image_name, self.rgb = name, rgb
        self.labels = self._labels_cache.get(name) or self._label(rgb)
        self._labels_cache[name] = self.labels
        self._set_widget(self.w_image_name, name)
        self.message = ""
        self.refresh()

    def upload(self, files) -> None:
        """Take the first file from a FileUpload value; a refused file leaves the explorer as it was."""
        files = list(files.values()) if isinstance(files, dict) else list(files or ())
        if not files:
            return
        self._set_widget(self.w_upload, ())  # the bytes need not live on in the saved widget state
        item = files[0]
        name = str(item.get("name", "upload"))
        try:
            rgb = decode_upload(name, bytes(item.get("content", b"")))
        except ValueError as exc:
            self._show_message(f"Upload refused: {exc}", error=True)
            return
        key = f"upload: {name}"
        self._choices[key] = rgb
        self._labels_cache.pop(key, None)
        self.w_image_name.options = tuple(self._choices)
        self.select_image(key)
        found = [p for p in PART_NAMES if self.labels.present[p]]
        self._show_message(f"Uploaded {name} ({rgb.shape[1]}x{rgb.shape[0]}); MediaPipe found: "
                           f"{', '.join(found) or 'no person'}", error=not found)

    def set_preset(self, name: str) -> None:
        self.params = preset(name)
        self.preset_name = name
        with self._syncing_widgets():
            self.w_preset.value = name
            for knob, slider in self.w_knobs.items():
                slider.value = getattr(self.params, knob)
        self.refresh()

    def set_param(self, name: str, value) -> None:
        self.params = self.params.replace(**{name: value})
        self._set_widget(self.w_knobs[name], value)
        self.refresh()

    def set_seed(self, seed: int) -> None:
        self.seed = int(seed)
        self._set_widget(self.w_seed, self.seed)
        self.refresh()

    def set_parts(self, parts) -> None:
        parts = tuple(parts)
        unknown = set(parts) - set(PART_NAMES)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; expected some of {PART_NAMES}")
        self.parts = tuple(p for p in PART_NAMES if p in parts)
        with self._syncing_widgets():
            for part, box in self.w_parts.items():
                box.value = part in self.parts
        self.render()

    def set_mesh(self, on: bool) -> None:
        self.mesh = bool(on)
        self._set_widget(self.w_mesh, self.mesh)
        self.render()

    def set_swap_twins(self, on: bool) -> None:
        """False shows what a layout-blind flip does to the labels (wrong on purpose)."""
        self.swap_twins = bool(on)
        self._set_widget(self.w_swap, self.swap_twins)
        self.refresh()

    def select_point(self, index: int) -> None:
        index = int(index)
        if not 0 <= index < NUM_KEYPOINTS:
            raise ValueError(f"point index must be in 0..{NUM_KEYPOINTS - 1}, got {index}")
        self.point = index
        self._set_widget(self.w_point, index)
        self.render()

    def nearest_point(self, x_px: float, y_px: float) -> int:
        """Select and return the shown point nearest to (x, y) in augmented-image pixels."""
        px = self.aug_labels.pixels()
        shown = np.zeros(NUM_KEYPOINTS, bool)
        for part in self.parts:
            shown[PARTS[part]] = True
        distance = np.where(shown & self.aug_labels.mask(), np.hypot(px[:, 0] - x_px, px[:, 1] - y_px), np.inf)
        if not np.isfinite(distance).any():
            raise ValueError("no shown point to select: the image has no labels for the selected parts")
        self.select_point(int(np.argmin(distance)))
        return self.point

    # ----- state to picture -----
    def refresh(self) -> None:
        """Augment the current image with the current knobs and seed, then redraw."""
        augmenter = KeypointAugmenter(build_transforms(self.params), swap_twins=self.swap_twins, seed=self.seed)
        self.aug_rgb, self.aug_labels = augmenter(self.rgb, self.labels)
        self.render()

    def render(self) -> np.ndarray:
        """Draw the augmented image with the shown parts and the selected point; update the widget."""
        canvas = draw_cv2(self.aug_rgb, self.aug_labels, mesh=self.mesh, parts=self.parts)
        px = self.aug_labels.pixels()
        radius = max(4, round(max(canvas.shape[:2]) / 120))
        for index, color in ((FLIP_PERMUTATION[self.point], _TWIN_COLOR), (self.point, _SELECTED_COLOR)):
            if np.isfinite(px[index]).all() and part_of(int(index)) in self.parts:
                cv2.circle(canvas, tuple(int(round(v)) for v in px[index]), radius, color, 2, cv2.LINE_AA)
        self.rendered = canvas
        self.w_picture.value = self._png(canvas)
        self.w_info.value = self.point_info()
        return canvas

    def point_info(self) -> str:
        index, twin = self.point, int(FLIP_PERMUTATION[self.point])
        x, y = self.aug_labels.pixels()[index]
        where = ("absent (its part was not found)" if not np.isfinite(x)
                 else f"at ({x:.1f}, {y:.1f}) px, visibility {self.aug_labels.visibility[index]:.2f}")
        twin_text = "its own twin (on the midline)" if twin == index else f"twin #{twin} <b>{LANDMARK_NAMES[twin]}</b> (magenta)"
        flipped = " · image mirrored: rows swapped" if self.aug_labels.extras.get("mirrored") and self.swap_twins else ""
        return f"#{index} <b>{LANDMARK_NAMES[index]}</b> {where}; {twin_text}{flipped}"

    def _png(self, rgb: np.ndarray) -> bytes:
        scale = self.display_max_side / max(rgb.shape[:2])
        if scale < 1:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {rgb.shape} image as PNG")
        return data.tobytes()

    def _label(self, rgb: np.ndarray) -> HolisticResult:
        if self._teacher is None:
            from .teacher import MediaPipeTeacher

            self._teacher = (self._teacher_factory or MediaPipeTeacher)()
        return self._teacher.process(rgb)

    def _show_message(self, text: str, error: bool = False) -> None:
        self.message = text
        color = "#b00020" if error else "#1b5e20"
        # escaped: messages carry upload file names, which a user (or an attacker) chooses
        self.w_message.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    # ----- widgets -----
    @contextlib.contextmanager
    def _syncing_widgets(self):
        """Widget values set from code inside this block do not call the callbacks back."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _set_widget(self, widget, value) -> None:
        with self._syncing_widgets():
            widget.value = value

    def _on(self, widget, callback) -> None:
        def handler(change):
            if not self._syncing:
                callback(change["new"])

        widget.observe(handler, names="value")

    def _build_widgets(self) -> None:
        import ipywidgets as w

        self.w_picture = w.Image(format="png", layout=w.Layout(max_width=f"{self.display_max_side}px"))
        self.w_image_name = w.Dropdown(options=tuple(self._choices), description="image")
        self.w_upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.w_parts = {part: w.Checkbox(value=True, description=part, indent=False) for part in PART_NAMES}
        self.w_mesh = w.Checkbox(value=self.mesh, description="face mesh", indent=False)
        self.w_swap = w.Checkbox(value=self.swap_twins, description="swap left/right on mirror", indent=False)
        self.w_preset = w.Dropdown(options=tuple(PRESETS), value=self.preset_name, description="preset")
        self.w_seed = w.IntSlider(value=self.seed, min=0, max=99, description="seed")
        self.w_knobs = {}
        for name, spec in knob_specs().items():
            slider_type = w.IntSlider if spec["integer"] else w.FloatSlider
            self.w_knobs[name] = slider_type(value=getattr(self.params, name), min=spec["low"], max=spec["high"],
                                             step=spec["step"], description=name, tooltip=spec["doc"],
                                             style={"description_width": "110px"}, continuous_update=False)
        self.w_point = w.Dropdown(options=[(f"{i} {name}", i) for i, name in enumerate(LANDMARK_NAMES)],
                                  value=self.point, description="point")
        self.w_info, self.w_message = w.HTML(), w.HTML()

        self._on(self.w_image_name, self.select_image)
        self._on(self.w_upload, self.upload)
        for part, box in self.w_parts.items():
            self._on(box, lambda _, part=part: self.set_parts(p for p, b in self.w_parts.items() if b.value))
        self._on(self.w_mesh, self.set_mesh)
        self._on(self.w_swap, self.set_swap_twins)
        self._on(self.w_preset, self.set_preset)
        self._on(self.w_seed, self.set_seed)
        for name, slider in self.w_knobs.items():
            self._on(slider, lambda value, name=name: self.set_param(name, value))
        self._on(self.w_point, self.select_point)

        controls = w.VBox([
            self.w_image_name, self.w_upload,
            w.HBox(list(self.w_parts.values())), w.HBox([self.w_mesh, self.w_swap]),
            self.w_preset, self.w_seed,
            w.Accordion([w.VBox(list(self.w_knobs.values()))], titles=("augmentation knobs",)),
            self.w_point,
        ])
        self.widget = w.VBox([w.HBox([self.w_picture, controls]), self.w_info, self.w_message])
