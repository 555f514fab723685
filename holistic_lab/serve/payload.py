"""The JSON one tracked image becomes, shared by `POST /predict` and the video WebSocket:
`keypoints` (543 x [x, y, z], normalised, null for an absent point), `pixels` (543 x [x, y]
or null), `visibility`, `present`, `gestures`, `timings_ms`, `variant`, `image_sha256`,
`width`, `height`, and `parts` (each part's index range) so a client can draw by part.
`result_from_payload` turns that JSON back into a `HolisticResult` (for `viz.draw`, metrics)."""
from __future__ import annotations

import math

import numpy as np

from ..result import HolisticResult
from ..topology import PARTS


def _rows(array: np.ndarray, digits: int) -> list:
    return [None if not np.all(np.isfinite(row)) else [round(float(v), digits) for v in row] for row in array]


def result_payload(result: HolisticResult, timings_ms: dict, variant: str, image_sha256: str | None) -> dict:
    pixels = result.pixels()
    gestures = None
    if result.gestures is not None:
        gestures = {hand: (None if g is None else {"label": g[0], "score": round(float(g[1]), 4)})
                    for hand, g in result.gestures.items()}
    return {
        "keypoints": _rows(result.xyz, 5),
        "pixels": _rows(pixels, 1),
        "visibility": [0.0 if not math.isfinite(v) else round(float(v), 4) for v in result.visibility],
        "present": dict(result.present),
        "gestures": gestures,
        "timings_ms": {name: round(float(ms), 2) for name, ms in timings_ms.items()},
        "variant": variant,
        "image_sha256": image_sha256,
        "width": result.width,
        "height": result.height,
        "parts": {name: [sl.start, sl.stop] for name, sl in PARTS.items()},
    }


def result_from_payload(payload: dict) -> HolisticResult:
    """The `HolisticResult` a `/predict` (or video) JSON reply describes; null rows become NaN.
    Gestures come back as (label, score) per hand. A reply of another shape is a ValueError."""
    try:
        rows = payload["keypoints"]
        xyz = np.array([[math.nan] * 3 if row is None else row for row in rows], dtype=np.float32)
        gestures = payload.get("gestures")
        if gestures is not None:
            gestures = {hand: None if g is None else (g["label"], float(g["score"])) for hand, g in gestures.items()}
        return HolisticResult(xyz=xyz, visibility=np.asarray(payload["visibility"], np.float32),
                              present=payload["present"], width=payload["width"], height=payload["height"],
                              gestures=gestures)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a holistic-lab prediction reply: {error}") from None
