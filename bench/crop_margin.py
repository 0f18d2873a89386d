"""How a crop set's given face crops are framed, in the units of our alignment (the face margin).

Each crop of ``dfdc_faces`` (default) or of another crop set (``--set ffpp_faces``) (a tight detector box upscaled to 224) is pasted in the middle of a
black canvas three times its size; RetinaFace finds the face and its five keypoints; the
MesoNet alignment scale ``l`` of those keypoints (``data_prep.faces.align``) gives

* ``crop / l``: the margin at which our alignment reproduces the crop's framing
  (``DFDC_CROP_MARGIN`` = 1.05, what the shipped models record);
* ``dx / l``, ``dy / l``: the crop centre's offset from the alignment centre;
* the crop size relative to the RetinaFace box, for reference.

Prints median and 10th / 90th percentiles. Reads ``../shared/data/dfdc_faces`` (research
data, never copied into the repository).

    .venv/bin/python bench/crop_margin.py [--n 300] [--set ffpp_faces] [--every 1]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(os.environ.get("DFD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FACES = SHARED / "data" / "dfdc_faces"


def crops(n: int, faces: Path = FACES, every: int = 1):
    """``n`` crops of the first archive of ``faces`` (every ``every``-th), as RGB arrays."""
    import numpy as np
    from PIL import Image

    with tarfile.open(sorted(faces.glob("faces-*.tar"))[0]) as tar:
        jpgs = (m for m in tar if m.isfile() and m.name.endswith(".jpg"))
        for i, member in enumerate(m for k, m in enumerate(jpgs) if k % every == 0):
            if i >= n:
                return
            data = tar.extractfile(member).read()
            yield np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def main(argv=None) -> int:
    import numpy as np

    from data_prep.faces import get_detector
    from data_prep.faces.align import alignment_geometry
    from dfd.framing import DFDC_CROP_MARGIN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="crops to measure (default: %(default)s)")
    ap.add_argument("--set", default="dfdc_faces", help="crop set under ../shared/data "
                    "(default: %(default)s)")
    ap.add_argument("--every", type=int, default=1,
                    help="take every k-th crop (several frames of one video follow each other)")
    args = ap.parse_args(argv)
    faces = SHARED / "data" / args.set
    if not faces.exists():
        sys.exit(f"research data not found at {faces} (set DFD_SHARED)")
    det = get_detector("retinaface", detect_side=None, min_face=20)
    rows, total = [], 0
    for crop in crops(args.n, faces, max(1, args.every)):
        total += 1
        h, w = crop.shape[:2]
        canvas = np.zeros((3 * h, 3 * w, 3), np.uint8)
        canvas[h:2 * h, w:2 * w] = crop
        found = det.detect([canvas])[0]
        if not found:
            continue
        d = max(found, key=lambda x: x.width * x.height)
        x0, y0, x1, y1 = d.box
        cx, cy, side, _ = alignment_geometry(d, margin=1.0)  # side = l
        mx, my = 1.5 * w, 1.5 * h
        rows.append((w / side, (mx - cx) / side, (my - cy) / side, w / (x1 - x0), h / (y1 - y0)))
    a = np.asarray(rows)
    print(f"crops: {total}, faces found: {len(rows)} (RetinaFace on a black 3x canvas)")
    names = ["crop side / l (margin)", "centre dx / l", "centre dy / l",
             "crop / box width", "crop / box height"]
    print(f"{'':26s} {'median':>8s} {'p10':>8s} {'p90':>8s}")
    for i, name in enumerate(names):
        col = a[:, i]
        print(f"{name:26s} {np.median(col):8.3f} {np.percentile(col, 10):8.3f} "
              f"{np.percentile(col, 90):8.3f}")
    print(f"DFDC_CROP_MARGIN in the package: {DFDC_CROP_MARGIN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
