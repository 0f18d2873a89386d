"""Face framing: how much of the head a face crop holds. The one home of every margin.

A face crop is a square around the face's alignment centre whose side is ``margin`` times the
face scale ``l`` (``data_prep.faces.align``: ``l = 2.2 * max(eye distance, eye-to-mouth)``;
without keypoints the detector box's longer side). **The margin is part of a model's input
contract**: a CNN trained on faces framed one way scores faces framed another way worse, so
every model records the margin it was trained on in its preset (:mod:`dfd.presets`), every
shard directory the margin its faces were cut at (``index.json``), and the detector cuts faces
at the model's margin. Two framings matter here:

* :data:`MESONET_MARGIN` (1.3): MesoNet's own alignment, what the authors' weights saw, and
  the margin assumed for a model that records none;
* :data:`DFDC_CROP_MARGIN` (1.06): DFDC's given face crops (``dfdc_faces``: a tight detector
  box upscaled to 224), what the shipped models were trained on. Measured, not tuned, by
  ``bench/crop_margin.py``: pasted in the middle of a black 3x canvas, 988 of 1,000 such
  crops gave RetinaFace keypoints whose alignment scale ``l`` makes the crop side
  ``1.062 l`` (median; p10 0.93, p90 1.19), centred within 0.01 ``l`` of the alignment centre.

:func:`recrop_margin` turns faces cut at one margin into the same faces at a smaller one (a
centre crop: the alignment centre is the crop centre), so one extraction serves models with
different margins.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfd import schema

log = logging.getLogger(__name__)

MESONET_MARGIN = 1.3
DFDC_CROP_MARGIN = 1.06
MARGIN_RANGE = (0.5, 3.0)


def check_margin(margin, what: str = "face_margin") -> float:
    """``margin`` as a float within [0.5, 3]; ValueError naming ``what`` and the bad value."""
    try:
        m = float(margin)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {margin!r}") from None
    if not MARGIN_RANGE[0] <= m <= MARGIN_RANGE[1]:
        raise ValueError(f"{what} must be within [{MARGIN_RANGE[0]:g}, {MARGIN_RANGE[1]:g}], "
                         f"got {margin!r}")
    return m


def recrop_margin(faces: np.ndarray, have: float, want: float, size: int | None = None) -> np.ndarray:
    """Faces aligned at margin ``have`` as faces aligned at margin ``want`` (``want <= have``).

    ``faces``: ``[N, S, S, 3]`` uint8 squares; the result is ``[N, size, size, 3]`` (``size``
    defaults to ``S``): the centre ``S * want / have`` square, area-resampled. A larger margin
    than the faces hold cannot be made (the border was never cropped): ``ValueError`` naming
    both margins.
    """
    import cv2

    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1] != faces.shape[2] or faces.shape[3] != 3:
        raise ValueError(f"faces must be [N, S, S, 3] squares, got shape {faces.shape}")
    if not (have > 0 and want > 0):
        raise ValueError(f"margins must be > 0, got have={have}, want={want}")
    if want > have + 1e-9:
        raise ValueError(f"cannot make margin {want} from faces cropped at margin {have}: "
                         "extract the faces at the larger margin")
    src = faces.shape[1]
    size = int(size or src)
    side = max(1, int(round(src * want / have)))
    if side == src and size == src:
        return faces
    o = (src - side) // 2
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, f in enumerate(faces):
        out[i] = cv2.resize(np.ascontiguousarray(f[o:o + side, o:o + side]), (size, size),
                            interpolation=interp)
    return out


def shards_face_margin(source: str | Path | Sequence[str | Path]) -> float | None:
    """The face framing (``face_margin`` of ``index.json``) shared by every shard of
    ``source``; None when an index lacks it or they disagree."""
    margins = set()
    for d in sorted({f.parent for f in schema.resolve_shards(source)}):
        try:
            margins.add(schema.read_index(d).get("face_margin"))
        except (OSError, ValueError):
            margins.add(None)
    if len(margins) == 1 and None not in margins:
        return float(margins.pop())
    if len(margins) > 1:
        log.warning("shards hold faces framed at different margins %s", sorted(margins, key=str))
    return None


def reframer(model_margin: float | None, faces_margin: float | None, name: str = "model"):
    """A function turning faces cut at ``faces_margin`` into faces at ``model_margin``, or None
    when there is nothing to do (same margin, either unknown, or the faces are tighter than
    the model wants: that cannot be undone, and a warning says so)."""
    if model_margin is None or faces_margin is None or abs(faces_margin - model_margin) < 1e-6:
        return None
    if faces_margin < model_margin:
        log.warning("model %r was trained on faces framed at margin %.2f but is given tighter "
                    "ones (%.2f); scored as they are", name, model_margin, faces_margin)
        return None
    log.info("model %r: faces (margin %.2f) centre-cropped to its margin %.2f",
             name, faces_margin, model_margin)
    return lambda faces, size=None: recrop_margin(faces, faces_margin, model_margin, size=size)
