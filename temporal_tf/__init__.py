"""TimeDistributed ResNet/ResNeXt + LSTM: the temporal model over clips of faces.

Importing the package registers the builder ``temporal`` with :mod:`dfd.presets` (a config
dict in, a ``keras.Model`` on ``faces`` uint8 ``[B, T, H, W, 3]`` + ``mask`` out, P(fake)),
with its own backbone-freezing rule. TensorFlow is imported only when a model is built.
"""

from dfd import presets as _presets
from temporal_tf.model import build_temporal_model, set_backbone_trainable

__all__ = ["build_temporal_model", "set_backbone_trainable"]

_presets.register_builder("temporal", build_temporal_model, style="config", input_kind="clips",
                          set_backbone_trainable=set_backbone_trainable)
