"""Quality facts of a scored video: what makes its verdict less trustworthy.

A detector trained on faces of one size and compression reads small, blurred or heavily
compressed faces badly; a video where few sampled frames show a face is judged on little.
Each result row carries (``None`` where unknown):

* ``face_px``: median side of the face boxes in source-frame pixels;
* ``sharpness``: median sharpness of the faces as scored (:mod:`dfd.image_stats`: variance of
  the Laplacian over the middle half of the grey face at 256 px, whatever the model's input
  size, as ``dfd audit`` measures it): low = blurred or upscaled from a small face;
* ``bpp``: the file's bits per pixel per frame (``8 * bytes / (frames * width * height)``), an
  estimate of compression: low = heavy compression;
* ``frames_with_face`` / ``n_frames``: sampled frames where a face was found.

:func:`warnings` turns them into plain-language notes by the limits below (documented in
docs/detect-and-serve.md); they never change the score or the verdict.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfd import image_stats

#: below these, a fact is reported as a warning
MIN_FACE_PX = 100
MIN_SHARPNESS = 20.0
MIN_BPP = 0.02
MIN_FACE_SHARE = 0.5


def face_px(boxes) -> float | None:
    sides = [max(b[2] - b[0], b[3] - b[1]) for b in boxes or [] if b is not None and len(b) == 4]
    return float(np.median(sides)) if sides else None


def sharpness(faces: np.ndarray) -> float | None:
    """Median sharpness (:func:`dfd.image_stats.sharpness`) of uint8 RGB faces ``[N, S, S, 3]``."""
    if faces is None or len(faces) == 0:
        return None
    return float(np.median([image_stats.sharpness(f) for f in faces]))


def bits_per_pixel(path, frame_count, width, height) -> float | None:
    try:
        size = os.path.getsize(Path(path))
    except OSError:
        return None
    if not (frame_count and width and height):
        return None
    return float(8.0 * size / (float(frame_count) * float(width) * float(height)))


def facts(path, faces, boxes, meta: dict, n_frames: int, frames_with_face: int) -> dict:
    """The quality facts of one scored video (see the module doc)."""
    out = {"face_px": face_px(boxes), "sharpness": sharpness(faces),
           "bpp": bits_per_pixel(path, meta.get("frame_count"), meta.get("width"),
                                 meta.get("height")),
           "frames_with_face": int(frames_with_face), "n_frames": int(n_frames)}
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
    out["warnings"] = warnings(out)
    return out


def warnings(q: dict) -> list[str]:
    """Plain-language notes for the facts below the limits of this module."""
    notes = []
    if q.get("face_px") is not None and q["face_px"] < MIN_FACE_PX:
        notes.append(f"small face ({q['face_px']:.0f} px; under {MIN_FACE_PX} px the model "
                     "sees little detail)")
    if q.get("sharpness") is not None and q["sharpness"] < MIN_SHARPNESS:
        notes.append(f"blurred face (sharpness {q['sharpness']:.1f} < {MIN_SHARPNESS:g})")
    if q.get("bpp") is not None and q["bpp"] < MIN_BPP:
        notes.append(f"heavy compression ({q['bpp']:.3f} bits/pixel < {MIN_BPP:g})")
    n, found = q.get("n_frames") or 0, q.get("frames_with_face") or 0
    if n and found / n < MIN_FACE_SHARE:
        notes.append(f"a face in only {found} of {n} sampled frames")
    return notes
