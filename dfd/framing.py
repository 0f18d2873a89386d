"""Face framing: how much of the head a face crop holds, and where it is centred. The one
home of every margin and centre.

A face crop is a square whose side is ``margin`` times the face scale ``l``
(``data_prep.faces.align``: ``l = 2.2 * max(eye distance, eye-to-mouth)``; without keypoints
the detector box's longer side), around the face's alignment centre moved ``centre * l``
along the face's vertical axis (negative: towards the forehead; 0 for every model but the
authors' weights). **The framing is part of a model's input contract**: a CNN trained on
faces framed one way scores faces framed another way worse, so every model records the
margin and centre it was trained on in its preset (:mod:`dfd.presets`), every shard directory
the framing its faces were cut at (``index.json``: ``face_margin``, ``face_centre``, absent
meaning 0), and the detector cuts faces at the model's framing. Two framings matter here:

* :data:`MESONET_MARGIN` (1.3): MesoNet's own alignment, what the authors' weights saw, and
  the margin assumed for a model that records none;
* :data:`DFDC_CROP_MARGIN` (1.06): DFDC's given face crops (``dfdc_faces``: a tight detector
  box upscaled to 224), what the shipped models were trained on. Measured, not tuned, by
  ``bench/crop_margin.py``: pasted in the middle of a black 3x canvas, 988 of 1,000 such
  crops gave RetinaFace keypoints whose alignment scale ``l`` makes the crop side
  ``1.062 l`` (median; p10 0.93, p90 1.19), centred within 0.01 ``l`` of the alignment centre.

and one centre, :data:`MESONET_CENTRE` (-0.033): the authors' pipeline (dlib's 68 landmarks)
centres its crop on the middle of the nose, higher than our five-keypoint alignment centre by
0.033 ``l`` (median of 222 faces of the 15 labelled clips, ``bench/framing_dlib.py``; the
per-face spread, 0.032 of the crop side, is landmark noise, the same for every five-point
rule tried). It moves the authors' Meso4_DF's scores as much as any step of the framing
(docs/faces.md).

:func:`recrop_margin` turns faces cut at one framing into the same faces at a smaller margin
and, within what the crop holds, another centre, so one extraction serves models with
different framings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dfd import schema

log = logging.getLogger(__name__)

MESONET_MARGIN = 1.3
DFDC_CROP_MARGIN = 1.06
MESONET_CENTRE = -0.033
MARGIN_RANGE = (0.5, 3.0)
CENTRE_RANGE = (-0.5, 0.5)


def _check_range(value, what: str, bounds: tuple[float, float]) -> float:
    """``value`` as a float within ``bounds``; ValueError naming ``what`` and the bad value."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not bounds[0] <= v <= bounds[1]:
        raise ValueError(f"{what} must be within [{bounds[0]:g}, {bounds[1]:g}], got {value!r}")
    return v


def check_margin(margin, what: str = "face_margin") -> float:
    """``margin`` as a float within [0.5, 3]; ValueError naming ``what`` and the bad value."""
    return _check_range(margin, what, MARGIN_RANGE)


def check_centre(centre, what: str = "face_centre") -> float:
    """``centre`` as a float within [-0.5, 0.5]; ValueError naming ``what`` and the bad value."""
    return _check_range(centre, what, CENTRE_RANGE)


def recrop_fits(have: float, want: float, shift: float = 0.0) -> bool:
    """Whether faces cut at margin ``have`` hold the ``want`` square moved ``shift * l``."""
    return abs(shift) + want / 2 <= have / 2 + 1e-9


def recrop_margin(faces: np.ndarray, have: float, want: float, size: int | None = None,
                  shift: float = 0.0) -> np.ndarray:
    """Faces aligned at margin ``have`` as faces aligned at margin ``want`` (``want <= have``),
    their centre moved by ``shift`` (the wanted centre minus the faces' centre, in ``l``).

    ``faces``: ``[N, S, S, 3]`` uint8 squares, upright (the alignment removed the roll); the
    result is ``[N, size, size, 3]`` (``size`` defaults to ``S``): the ``S * want / have``
    square, ``S * shift / have`` below the middle, area-resampled. A square the faces do not
    hold cannot be made (the border was never cropped): ``ValueError`` naming the framings.
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1] != faces.shape[2] or faces.shape[3] != 3:
        raise ValueError(f"faces must be [N, S, S, 3] squares, got shape {faces.shape}")
    if not (have > 0 and want > 0):
        raise ValueError(f"margins must be > 0, got have={have}, want={want}")
    if not recrop_fits(have, want, shift):
        raise ValueError(f"cannot make margin {want} (centre moved {shift:+.3f}) from faces "
                         f"cropped at margin {have}: extract the faces at a larger margin")
    src = faces.shape[1]
    size = int(size or src)
    side = max(1, int(round(src * want / have)))
    o = (src - side) // 2
    oy = min(max(0, o + int(round(src * shift / have))), src - side)
    if side == src and size == src:
        return faces
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, f in enumerate(faces):
        out[i] = cv2.resize(np.ascontiguousarray(f[oy:oy + side, o:o + side]), (size, size),
                            interpolation=interp)
    return out


def _shards_value(source, key: str, absent):
    """The ``index.json`` value of ``key`` shared by every shard directory of ``source``
    (``absent`` where an index lacks it); None when unreadable or they disagree."""
    values = set()
    for d in sorted({f.parent for f in schema.resolve_shards(source)}):
        try:
            values.add(schema.read_index(d).get(key, absent))
        except (OSError, ValueError):
            values.add(None)
    if len(values) == 1 and None not in values:
        return float(values.pop())
    if len(values) > 1:
        log.warning("shards hold faces framed at different %s %s", key,
                    sorted(values, key=str))
    return None


def shards_face_margin(source: str | Path | Sequence[str | Path]) -> float | None:
    """The face framing (``face_margin`` of ``index.json``) shared by every shard of
    ``source``; None when an index lacks it or they disagree."""
    return _shards_value(source, "face_margin", None)


def shards_face_centre(source: str | Path | Sequence[str | Path]) -> float | None:
    """The crop centre (``face_centre`` of ``index.json``; absent: 0, the alignment centre
    every shard was cut at before it was recorded) shared by every shard of ``source``;
    None when they disagree."""
    return _shards_value(source, "face_centre", 0.0)


def reframer(model_margin: float | None, faces_margin: float | None, name: str = "model",
             model_centre: float | None = 0.0, faces_centre: float | None = 0.0):
    """A function turning faces cut at ``faces_margin`` (centre ``faces_centre``) into faces
    at ``model_margin`` (centre ``model_centre``), or None when there is nothing to do (same
    framing, either unknown, or the faces do not hold the model's square: that cannot be
    undone, and a warning says so)."""
    if model_margin is None or faces_margin is None:
        return None
    shift = (model_centre or 0.0) - (faces_centre or 0.0)
    if abs(faces_margin - model_margin) < 1e-6 and abs(shift) < 1e-6:
        return None
    if not recrop_fits(faces_margin, model_margin, shift):
        log.warning("model %r was trained on faces framed at margin %.2f, centre %+.3f, which "
                    "faces framed at margin %.2f, centre %+.3f do not hold; scored as they are",
                    name, model_margin, model_centre or 0.0, faces_margin, faces_centre or 0.0)
        return None
    log.info("model %r: faces (margin %.2f, centre %+.3f) re-cropped to its margin %.2f, "
             "centre %+.3f", name, faces_margin, faces_centre or 0.0, model_margin,
             model_centre or 0.0)
    return lambda faces, size=None: recrop_margin(faces, faces_margin, model_margin, size=size,
                                                  shift=shift)
