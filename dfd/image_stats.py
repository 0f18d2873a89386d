"""Sharpness of a face: one definition for ``dfd audit``, ``dfd detect``'s quality facts and
training's sharpness matching (:func:`dfd.training.augment.sharpness` is its TensorFlow twin,
measured at the faces' own size).

Sharpness is the variance of the Laplacian (OpenCV's ``ksize=1`` kernel) over the middle half,
rows and columns, of the grey face, measured at :data:`SIDE` x :data:`SIDE` pixels (resized
bilinearly) so that it reads the same whatever the crop's size. Low means blurred, or
upscaled from a small face. The middle half keeps the edges of hair and background out.
"""

from __future__ import annotations

import cv2
import numpy as np

#: faces are measured at this side (MesoNet's input)
SIDE = 256


def middle_half(n: int) -> tuple[int, int]:
    """First index and length of the middle half of a side of ``n`` pixels."""
    return n // 4, n - 2 * (n // 4)


def laplacian(grey: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The float32 Laplacian of a grey image resized to ``side`` x ``side``."""
    if grey.shape[:2] != (side, side):
        grey = cv2.resize(grey, (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=1)


def middle_variance(lap: np.ndarray) -> float:
    """Sharpness from a Laplacian (:func:`laplacian`): its variance over the middle half."""
    (r0, rh), (c0, cw) = middle_half(lap.shape[0]), middle_half(lap.shape[1])
    return float(lap[r0:r0 + rh, c0:c0 + cw].var())


def sharpness(face: np.ndarray, bgr: bool = False) -> float:
    """Sharpness of one uint8 face, RGB (``bgr``: OpenCV's BGR order) ``[H, W, 3]``."""
    code = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
    return middle_variance(laplacian(cv2.cvtColor(np.ascontiguousarray(face), code)))
