"""Clips and images of a real face made at test time: scikit-image's ``astronaut()`` (public
domain) scaled into frames of any size, written with PyAV; optional display rotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def face_frame(width: int, height: int, face_frac: float = 0.5, shift: int = 0) -> np.ndarray:
    """An RGB frame: grey background, the astronaut portrait (``face_frac`` of the height)
    in the middle, moved ``shift`` pixels right."""
    import cv2
    from skimage.data import astronaut

    img = np.ascontiguousarray(astronaut()[0:320, 90:410])  # head and shoulders
    side = max(16, int(face_frac * height))
    img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    x0 = min(max(0, (width - side) // 2 + shift), width - side)
    y0 = (height - side) // 2
    frame[y0:y0 + side, x0:x0 + side] = img
    return frame


def write_clip(path, frames, fps: int = 10, rotation: int = 0, codec: str = "libx264",
               faststart: bool = False) -> Path:
    """Write RGB ``frames`` (an iterable) to ``path``; ``rotation``: a display matrix turning
    the stored frames ``rotation`` degrees counter-clockwise for display; ``faststart``: the
    index at the front (a file cut short still claims every frame)."""
    import av

    path = Path(path)
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"preset": "ultrafast", "crf": "30"}
        if rotation:
            s.set_display_rotation(rotation)
        for f in (first, *frames):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def face_clip(path, width: int, height: int, n: int = 12, fps: int = 10,
              face_frac: float = 0.5, rotation: int = 0) -> Path:
    """A clip of ``n`` frames of a slowly moving face; with ``rotation`` the frames are stored
    turned clockwise by it, so the clip *displays* upright."""
    def gen():
        for i in range(n):
            f = face_frame(width, height, face_frac, shift=2 * i)
            yield np.ascontiguousarray(np.rot90(f, -(rotation // 90))) if rotation else f
    return write_clip(path, gen(), fps=fps, rotation=rotation)
