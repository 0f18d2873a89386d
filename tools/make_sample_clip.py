"""Make the sample clip shipped in dfd_app/samples/ (public-domain input only).

The frames come from scikit-image's ``astronaut`` photo (NASA, public domain: Eileen Collins),
moved by a slow zoom and pan so the clip looks like video. Run once; the output is committed.

    .venv/bin/python tools/make_sample_clip.py dfd_app/samples/astronaut.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data


def make(out: Path, seconds: float = 4.0, fps: int = 25, size: tuple[int, int] = (640, 360)):
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512
    canvas = cv2.copyMakeBorder(img, 64, 64, 256, 256, cv2.BORDER_REFLECT)
    w, h = size
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a video writer for {out}")
    n = int(seconds * fps)
    for i in range(n):
        t = i / max(1, n - 1)
        zoom = 1.0 + 0.15 * np.sin(np.pi * t)
        cx = canvas.shape[1] / 2 + 40 * np.sin(2 * np.pi * t)
        cy = canvas.shape[0] / 2 - 60
        m = cv2.getRotationMatrix2D((cx, cy), 2.0 * np.sin(2 * np.pi * t), zoom)
        m[0, 2] += w / 2 - cx
        m[1, 2] += h / 2 - cy
        writer.write(cv2.warpAffine(canvas, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "dfd_app/samples/astronaut.mp4")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(make(target), target.stat().st_size, "bytes")
