"""Write a contact sheet of real / self-blended pairs (``docs/img/sbi_pairs.png``).

Only public-domain faces: frames of the bundled ``dfd_app/samples/astronaut.mp4`` (faces
cut by ``dfd prep``'s own extraction, landmarks mapped into the crop) and scikit-image's
``astronaut()`` photograph. Each row: the real face, its self-blended fake
(:func:`dfd.training.sbi.self_blend`, default :class:`~dfd.training.config.SBIConfig`) and
the difference (x3) — what a model trained with ``--fakes sbi`` has to find — for two
faces / seeds side by side.

    .venv/bin/python tools/sbi_contact_sheet.py [--out docs/img/sbi_pairs.png] [--seed 0]
        [--sbi '{"downscale_prob": 1.0}']   # SBIConfig fields, as `dfd train --sbi`
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("sbi_contact_sheet")
SAMPLE = ROOT / "dfd_app" / "samples" / "astronaut.mp4"
SIZE = 256


def public_faces(n_video: int = 5):
    """``(faces [N,S,S,3], landmarks [N,5,2], boxes [N,4])`` of the public-domain sources."""
    import numpy as np
    from skimage.data import astronaut

    from data_prep.extract import ExtractConfig, extract_faces
    from data_prep.faces import align_face, get_detector
    from data_prep.landmarks import crop_coordinates
    from dfd import framing

    faces, lms, boxes = [], [], []
    vf = extract_faces(SAMPLE, "retinaface",
                       ExtractConfig(n_frames=n_video, sampler="uniform", face_size=SIZE))
    tr = vf.tracks[0]
    for face, lm, box in zip(tr.faces, tr.landmarks, tr.crop_boxes):
        if lm is not None:
            faces.append(face)
            lms.append(lm)
            boxes.append(box)
    img = astronaut()
    (det,) = get_detector("retinaface").detect([img])[0][:1]
    lm, box = crop_coordinates(det, framing.MESONET_MARGIN)  # as the video's faces
    faces.append(align_face(img, det, SIZE, framing.MESONET_MARGIN))
    lms.append(lm)
    boxes.append(box)
    return np.stack(faces), np.stack(lms), np.stack(boxes)


def sheet(faces, fakes, tile: int = 192):
    """Rows of (real, self-blended, |difference| x3) for two examples side by side."""
    import cv2
    import numpy as np

    def fit(im):
        return cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)

    cells = []
    for real, fake in zip(faces, fakes):
        diff = np.clip(np.abs(fake.astype(int) - real.astype(int)) * 3, 0, 255).astype(np.uint8)
        cells.append(np.concatenate([fit(real), fit(fake), fit(diff)], axis=1))
    if len(cells) % 2:
        cells.append(np.zeros_like(cells[0]))
    gap = np.full((tile, 8, 3), 255, np.uint8)
    rows = [np.concatenate([cells[i], gap, cells[i + 1]], axis=1) for i in range(0, len(cells), 2)]
    head = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for k, text in enumerate(["real", "self-blended", "difference x3"] * 2):
        x = k * tile + (8 if k >= 3 else 0) + 6
        cv2.putText(head, text, (x, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([head] + rows, axis=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "sbi_pairs.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--sbi", default="{}", help="JSON object of SBIConfig fields")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import json

    import cv2
    import numpy as np

    from dfd.training.config import SBIConfig
    from dfd.training.sbi import self_blend

    try:
        cfg = SBIConfig(**json.loads(args.sbi))
    except (ValueError, TypeError) as err:
        ap.error(f"--sbi {args.sbi!r}: {err}")

    faces, lms, boxes = public_faces()
    n = 2 * args.rows
    idx = np.arange(n) % len(faces)
    blend = self_blend(faces[idx], lms[idx], boxes[idx], [args.seed, 0], cfg)
    img = sheet(blend.real.numpy(), blend.fake.numpy())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    log.info("wrote %s (%d pairs from %d public-domain faces)", args.out, n, len(faces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
