"""Which step of the face framing costs the authors' MesoNet weights their accuracy on video?

Issue 10: the authors' Meso4_DF weights behind a plain crop (largest detector box x 1.3, no
rotation) do better on unseen videos than behind ``dfd detect``'s MesoNet-style alignment at
1.3. This bench cuts the same detections of the same sampled frames in several ways, one step
changed at a time, and scores every variant with the same weights:

* ``package``      ``data_prep.faces.align.align_face`` as ``dfd detect`` cuts faces: keypoint
                   scale, centre 0.5 nose + 0.25 eyes + 0.25 mouth, roll corrected, side 1.3 l,
                   and a large face area-averaged (antialiased) before the final warp;
* ``align``        the same geometry in one bilinear warp, no antialiasing (as the authors'
                   ``scipy.ndimage.zoom`` resize: sharp, aliased);
* ``align_nose_up``  the same with MesoNet's own centre (nose bridge / nose tip midpoint,
                   approximated from five points as 0.5 nose + 0.5 eye midpoint);
* ``align_noroll`` the alignment without the roll correction;
* ``box_centre``   keypoint scale, but centred on the detector box;
* ``box``          the plain crop: detector box centre, side 1.3 x max(box w, h), no roll;
* ``align_1.6``    the alignment with a wider margin (1.6);
* ``box_smooth``   the plain crop resized with area averaging (antialiased).

It prints, per variant: the crop side relative to the box, mean P(fake) of the FAKE and the
REAL clips, and the video ROC-AUC over the labelled clips of ``../shared/data``
(``dfdc_videos``, ``other_videos``). Run by hand::

    DFD_WEIGHTS_DIR=../shared/mesonet/weights python bench/framing.py [--frames 16]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from data_prep.faces import align_face, alignment_geometry, get_detector
from data_prep.sampling import sample_frames

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VARIANTS = ("package", "align", "align_nose_up", "align_noroll", "box_centre", "box",
            "align_1.6", "box_smooth")


def labelled_clips(root: Path = SHARED) -> list[tuple[Path, int]]:
    out = []
    meta = json.loads((root / "dfdc_videos" / "metadata.json").read_text())
    out += [(root / "dfdc_videos" / k, int(v["label"] == "FAKE")) for k, v in sorted(meta.items())]
    for line in (root / "other_videos" / "labels.csv").read_text().splitlines()[1:]:
        name, label = line.split(",")[:2]
        if label in ("REAL", "FAKE"):
            out.append((root / "other_videos" / name, int(label == "FAKE")))
    return out


def geometry(det, variant: str) -> tuple[float, float, float, float]:
    """``(cx, cy, side, roll)`` of a variant's crop of one detection."""
    x0, y0, x1, y1 = det.box
    box_side = max(x1 - x0, y1 - y0)
    if variant in ("box", "box_smooth"):
        return (x0 + x1) / 2, (y0 + y1) / 2, 1.3 * box_side, 0.0
    margin = 1.6 if variant == "align_1.6" else 1.3
    cx, cy, side, roll = alignment_geometry(det, margin)
    if variant == "align_noroll":
        roll = 0.0
    elif variant == "box_centre":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    elif variant == "align_nose_up" and det.keypoints:
        kp = {k: np.asarray(v, float) for k, v in det.keypoints.items()}
        eyes = (kp["left_eye"] + kp["right_eye"]) / 2
        cx, cy = 0.5 * kp["nose"] + 0.5 * eyes
    return cx, cy, side, roll


def crop(frame: np.ndarray, g, size: int = 256, smooth: bool = False,
         cubic: bool = False) -> np.ndarray:
    """One bilinear (``cubic``: bicubic) warp (sharp), or with ``smooth`` the square cut at
    full resolution and area-resized (antialiased)."""
    import cv2

    cx, cy, side, roll = g
    if smooth and roll == 0.0:
        big = max(size, int(round(side)))
        m = cv2.getRotationMatrix2D((cx, cy), 0.0, big / side)
        m[0, 2] += big / 2 - cx
        m[1, 2] += big / 2 - cy
        sq = cv2.warpAffine(np.ascontiguousarray(frame), m, (big, big), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
        return cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)
    m = cv2.getRotationMatrix2D((cx, cy), roll, size / side)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    return cv2.warpAffine(np.ascontiguousarray(frame), m, (size, size),
                          flags=cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


def auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y)) == 2 else math.nan


def main() -> None:
    from mesonet_tf import Meso4

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--weights", default="meso4_df")
    args = ap.parse_args()
    model = Meso4(weights=args.weights)
    detector = get_detector("default")
    clips = labelled_clips()
    scores = {v: [] for v in VARIANTS}
    ratio = {v: [] for v in VARIANTS}
    labels, t0 = [], time.perf_counter()
    for path, label in clips:
        sf = sample_frames(path, args.frames, mode="uniform", max_side=None)
        dets = detector.detect(sf.frames)
        faces = {v: [] for v in VARIANTS}
        for frame, found in zip(sf.frames, dets):
            if not found:
                continue
            det = max(found, key=lambda d: d.size)
            box_side = max(det.box[2] - det.box[0], det.box[3] - det.box[1])
            for v in VARIANTS:
                g = geometry(det, "align" if v == "package" else v)
                ratio[v].append(g[2] / box_side)
                if v == "package":
                    faces[v].append(align_face(frame, det, size=256, margin=1.3))
                else:
                    faces[v].append(crop(frame, g, smooth=v == "box_smooth"))
        if not faces["align"]:
            print(f"{path.name}: no face, left out")
            continue
        labels.append(label)
        for v in VARIANTS:
            p = model.predict(np.stack(faces[v]), verbose=0).ravel()
            scores[v].append(float(np.mean(p)))
        print(f"{path.name:<28} {'FAKE' if label else 'REAL'} "
              + " ".join(f"{v}={scores[v][-1]:.2f}" for v in VARIANTS), flush=True)
    y = np.array(labels)
    print(f"\n{len(y)} clips ({int(y.sum())} FAKE), {args.frames} frames each, weights "
          f"{args.weights}, {time.perf_counter() - t0:.0f} s")
    print(f"{'variant':<15} {'side/box':>9} {'P(fake) FAKE':>13} {'P(fake) REAL':>13} {'AUC':>6}")
    for v in VARIANTS:
        p = np.array(scores[v])
        print(f"{v:<15} {np.median(ratio[v]):>9.2f} {p[y == 1].mean():>13.3f} "
              f"{p[y == 0].mean():>13.3f} {auc(y, p):>6.3f}")


if __name__ == "__main__":
    main()
