"""Reading a still image to score (a face crop): whole, upright, big enough.

:func:`read_image` refuses what would give a score about nothing: a file that does not decode
**whole** (a JPEG cut short decodes to a grey lower part that PIL and TensorFlow pad silently),
and an image smaller than the smallest face the detector keeps (``min_side``: a 1x1 image is
not a face). It applies the **EXIF orientation** (phones store photos sideways with a tag that
says so), so the face is scored as it is shown.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: EXIF tag 0x0112; values 2..8 mirror and/or rotate (1 = as stored)
EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """An image cannot be scored: unreadable, cut short, or too small."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


@dataclass
class ImageInput:
    data: bytes  # encoded bytes for the decoder: the file's, or a PNG of the upright image
    width: int  # upright size
    height: int
    orientation: int = 1  # the EXIF orientation applied (1: none)


def read_image(path, min_side: float = 1.0) -> ImageInput:
    """The image at ``path``, checked whole and upright (see the module doc).

    The file's own bytes are kept when it is stored upright (so a crop scores exactly as the
    same bytes would from a shard); a rotated one is re-encoded losslessly (PNG) upright.
    Raises :class:`ImageReadError`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(path, err.strerror or str(err)) from None
    if not data:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes every pixel: a truncated file raises here
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            upright = ImageOps.exif_transpose(im) if orientation != 1 else im
            w, h = upright.size
            if orientation != 1:
                buf = io.BytesIO()
                upright.convert("RGB").save(buf, format="PNG")
                data = buf.getvalue()
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image format PIL can read") from None
    except Image.DecompressionBombError as err:  # memory bound: PIL's own pixel limit
        raise ImageReadError(path, f"too many pixels ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL: "image file is truncated", ...
        raise ImageReadError(path, f"does not decode whole ({err})") from None
    if min(w, h) < min_side:
        raise ImageReadError(path, f"{w}x{h} pixels is smaller than the smallest face scored "
                                   f"({min_side:g} pixels a side)")
    return ImageInput(data=data, width=w, height=h, orientation=orientation)


def decode_rgb(image: ImageInput) -> np.ndarray:
    """The upright RGB uint8 array of ``image``."""
    with Image.open(io.BytesIO(image.data)) as im:
        return np.asarray(im.convert("RGB"))
