"""The authors' own face crops (dlib's 68 landmarks, MesoNet's ``pipeline.py``) against ours.

Issue 10 asks that the authors' Meso4_DF weights behind ``dfd detect`` behave as behind the
authors' own pipeline. That pipeline finds faces with dlib's CNN detector (through the
``face_recognition`` package) in a zone around the previous face, at half resolution, takes
dlib's 68 landmarks of the face and cuts, around the middle of the nose (mean of the bridge
points and of the tip points), a square of side ``1.3 * 2.2 * max(eye distance, distance from
the eyes' midpoint to the lips' centre)``, rotated by the tilt of the eye-to-mouth line, then
resizes it to 256 with a cubic spline. ``data_prep.faces.align`` applies the same rule to
RetinaFace's five keypoints (eye centres, nose tip, mouth corners).

This bench takes the same sampled frames of the labelled clips of ``../shared/data``, finds
each face both ways (the zone for dlib: RetinaFace's box grown by 0.2 of its height, as the
authors grow their previous face's box) and prints:

* face by face, our geometry relative to theirs: side ratio, centre offset (fractions of
  their side), roll difference; the median and the 10th / 90th percentiles over all faces;
* per clip and overall, Meso4_DF's video score (mean P(fake)) and ROC-AUC behind their exact
  crop (their slicing, ``scipy.ndimage.rotate`` and ``zoom``), behind ours at MesoNet's margin
  (1.3), and behind ours at the margin that matches their median side.

dlib is not a dependency of the package; run by hand after
``pip install dlib-bin face_recognition_models``::

    DFD_WEIGHTS_DIR=../shared/mesonet/weights python bench/framing_dlib.py [--frames 16]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.framing import auc, crop, labelled_clips  # noqa: E402
from data_prep.faces import align_face, alignment_geometry, get_detector  # noqa: E402
from data_prep.sampling import sample_frames  # noqa: E402
from dfd.framing import MESONET_MARGIN  # noqa: E402

K_FACE = 2.2  # MesoNet's K in find_coordinates
# face_recognition's grouping of dlib's 68 points (face_recognition.api.face_landmarks)
GROUPS = {
    "nose_bridge": list(range(27, 31)),
    "nose_tip": list(range(31, 36)),
    "left_eye": list(range(36, 42)),
    "right_eye": list(range(42, 48)),
    "top_lip": list(range(48, 55)) + [64, 63, 62, 61, 60],
    "bottom_lip": list(range(54, 60)) + [48, 60, 67, 66, 65, 64],
}


class AuthorsFaces:
    """dlib's CNN detector and 68-point predictor, used as MesoNet's pipeline uses them."""

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as e:
            sys.exit(f"this bench needs dlib and its models: pip install dlib-bin "
                     f"face_recognition_models ({e})")
        self.dlib = dlib
        self.cnn = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        self.predictor = dlib.shape_predictor(frm.pose_predictor_model_location())

    def landmarks(self, frame: np.ndarray, box) -> np.ndarray | None:
        """The 68 points of the face in the zone around ``box`` (x0, y0, x1, y1), or None.
        The zone: the box grown by 0.2 of its height, searched at half resolution with
        one upsampling, the largest face kept (``FaceFinder.find_faces``)."""
        import cv2

        h, w = frame.shape[:2]
        x0, y0, x1, y1 = box
        off = round(0.2 * (y1 - y0))
        zx0, zy0 = max(int(x0) - off, 0), max(int(y0) - off, 0)
        zx1, zy1 = min(int(x1) + off, w), min(int(y1) + off, h)
        zone = np.ascontiguousarray(frame[zy0:zy1, zx0:zx1])
        small = cv2.resize(zone, (max(1, zone.shape[1] // 2), max(1, zone.shape[0] // 2)),
                           interpolation=cv2.INTER_LINEAR)
        found = self.cnn(small, 1)
        if len(found) == 0:
            return None
        r = max((d.rect for d in found), key=lambda r: r.bottom() - r.top())
        rect = self.dlib.rectangle(zx0 + round(r.left() * 2), zy0 + round(r.top() * 2),
                                   zx0 + round(r.right() * 2), zy0 + round(r.bottom() * 2))
        shape = self.predictor(np.ascontiguousarray(frame), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], float)


def authors_geometry(points: np.ndarray) -> tuple[float, float, float, float]:
    """``(cx, cy, side, rot)`` as ``FaceFinder.find_coordinates`` and ``get_aligned_face``
    (l_factor 1.3): side before the integer rounding, ``rot`` in their sign (degrees of the
    eye-to-mouth line from the vertical)."""
    g = {k: points[v].mean(axis=0) for k, v in GROUPS.items()}
    e1, e2 = g["left_eye"], g["right_eye"]
    e = (e1 + e2) / 2
    n = g["nose_tip"] / 2 + g["nose_bridge"] / 2
    b = (g["top_lip"] + g["bottom_lip"]) / 2
    length = max(np.linalg.norm(e1 - e2), np.linalg.norm(b - e)) * K_FACE
    if b[1] == e[1]:
        rot = 90.0 if b[0] > e[0] else -90.0
    else:
        rot = math.degrees(math.atan((b[0] - e[0]) / (b[1] - e[1])))
    return float(n[0]), float(n[1]), float(int(length) * MESONET_MARGIN), rot


def authors_crop(frame: np.ndarray, geom, size: int = 256) -> np.ndarray:
    """The authors' cut of ``geom`` = ``(cx, cy, side, rot)`` (their sign of ``rot``), step by
    step as ``get_aligned_face`` + ``resize_patch``: a reflect-padded square of side
    sqrt(2) x side, ``scipy.ndimage.rotate`` (cubic spline), the centre square, ``zoom`` to
    ``size`` (cubic spline, no antialiasing). In float (their uint8 arrays went through
    scipy as they were; float avoids wrap-around), rounded to uint8."""
    from scipy.ndimage import rotate, zoom

    cx, cy, length, rot = geom
    c = (math.floor(cy), math.floor(cx))
    dl = math.floor(math.sqrt(2) * length / 2)

    def image_slice(img, y0, y1, x0, x1):
        m, k = img.shape[:2]
        pad = max(-y0, y1 - m, -x0, x1 - k, 0)
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), "reflect")
        return padded[pad + y0:pad + y1, pad + x0:pad + x1]

    patch = image_slice(frame.astype(np.float32), c[0] - dl, c[0] + dl, c[1] - dl, c[1] + dl)
    patch = rotate(patch, -rot, reshape=False)
    half = length // 2
    patch = image_slice(patch, math.floor(dl - half), math.floor(dl + half),
                        math.floor(dl - half), math.floor(dl + half))
    m, k = patch.shape[:2]
    out = zoom(patch, (size / m, size / k, 1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def laplacian_std(crops: np.ndarray) -> float:
    """Mean over crops of the standard deviation of the grey 4-neighbour Laplacian."""
    grey = crops.astype(np.float32).mean(axis=-1)
    lap = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
           - 4 * grey[:, 1:-1, 1:-1])
    return float(lap.reshape(len(crops), -1).std(axis=1).mean())


def main() -> None:
    from mesonet_tf import Meso4

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--weights", default="meso4_df")
    args = ap.parse_args()
    authors = AuthorsFaces()
    detector = get_detector("default")
    clips = labelled_clips()
    t0 = time.perf_counter()
    per_clip = []  # (name, label, [(frame, det, points)])
    geo = []  # side ratio, dx, dy, roll difference
    for path, label in clips:
        sf = sample_frames(path, args.frames, mode="uniform", max_side=None)
        faces = []
        for frame, found in zip(sf.frames, detector.detect(sf.frames)):
            if not found:
                continue
            det = max(found, key=lambda d: d.size)
            pts = authors.landmarks(frame, det.box)
            if pts is None:
                continue
            faces.append((frame, det, pts))
            ax, ay, aside, arot = authors_geometry(pts)
            ox, oy, oside, oroll = alignment_geometry(det, MESONET_MARGIN)
            geo.append((oside / aside, (ox - ax) / aside, (oy - ay) / aside, oroll + arot))
        per_clip.append((path.name, label, faces))
        print(f"{path.name:<28} {len(faces):>2} faces found both ways", flush=True)
    g = np.array(geo)
    print(f"\n{len(g)} faces, {len(clips)} clips, {time.perf_counter() - t0:.0f} s")
    print("ours / theirs at margin 1.3   median   p10    p90")
    for i, name in enumerate(("side ratio", "centre dx / side", "centre dy / side",
                              "roll difference (deg)")):
        print(f"  {name:<26} {np.median(g[:, i]):>7.3f} {np.percentile(g[:, i], 10):>6.3f} "
              f"{np.percentile(g[:, i], 90):>6.3f}")
    matched = round(MESONET_MARGIN / float(np.median(g[:, 0])), 2)
    # their centre as ours moved along the face's vertical axis, in units of l (side / margin)
    shift = -round(float(np.median(g[:, 2])) * MESONET_MARGIN / float(np.median(g[:, 0])), 3)
    model = Meso4(weights=args.weights)

    def theirs(det, pts):
        return authors_geometry(pts)

    def ours(det, pts, margin=MESONET_MARGIN):
        cx, cy, side, roll = alignment_geometry(det, margin)
        return cx, cy, side, -roll  # in their sign

    def shifted(det, dy):  # our geometry, the centre moved dy * l towards the chin
        cx, cy, side, roll = alignment_geometry(det, MESONET_MARGIN)
        step = dy * side / MESONET_MARGIN
        r = math.radians(roll)
        return cx - step * math.sin(r), cy + step * math.cos(r), side, roll

    def flip(geom):  # their sign of the rotation <-> ours
        return geom[:3] + (-geom[3],)

    variants = {  # name: (frame, det, points) -> crop
        "theirs (dlib, exact)": lambda f, d, p: authors_crop(f, theirs(d, p)),
        "their geometry, our warp": lambda f, d, p: crop(f, flip(theirs(d, p))),
        "our geometry, their resampling": lambda f, d, p: authors_crop(f, ours(d, p)),
        f"ours at {MESONET_MARGIN} (dfd detect)": lambda f, d, p: align_face(f, d, size=256),
        f"ours at {matched} (their median side)":
            lambda f, d, p: align_face(f, d, size=256, margin=matched),
        "ours, one bicubic warp": lambda f, d, p: crop(f, flip(ours(d, p)), cubic=True),
        "their centre, our side and roll":
            lambda f, d, p: crop(f, theirs(d, p)[:2] + flip(ours(d, p))[2:]),
        "our centre, their side and roll":
            lambda f, d, p: crop(f, ours(d, p)[:2] + flip(theirs(d, p))[2:]),
        f"ours, centre moved {shift:+.3f} l": lambda f, d, p: crop(f, shifted(d, shift)),
    }
    scores = {v: [] for v in variants}
    sharp = {v: [] for v in variants}
    labels = []
    for name, label, faces in per_clip:
        if not faces:
            continue
        labels.append(label)
        for v, cut in variants.items():
            crops = np.stack([cut(f, det, pts) for f, det, pts in faces])
            scores[v].append(float(model.predict(crops, verbose=0).mean()))
            sharp[v].append(laplacian_std(crops))
        print(f"{name:<28} {'FAKE' if label else 'REAL'} "
              + " ".join(f"{s[-1]:.2f}" for s in scores.values()), flush=True)
    y = np.array(labels)
    print(f"\n{'variant':<34} {'P(fake) FAKE':>13} {'P(fake) REAL':>13} {'AUC':>6} "
          f"{'sharpness':>10}")
    for v in variants:
        p = np.array(scores[v])
        print(f"{v:<34} {p[y == 1].mean():>13.3f} {p[y == 0].mean():>13.3f} {auc(y, p):>6.3f} "
              f"{np.mean(sharp[v]):>10.1f}")
    print("sharpness: standard deviation of the grey crops' 4-neighbour Laplacian, mean of clips")


if __name__ == "__main__":
    main()
