"""MesoNet for TensorFlow/Keras: Meso-4 and MesoInception-4 with the authors' weights.

Every model here outputs P(fake) (see :mod:`dfd.labels`). Importing the package registers,
with :mod:`dfd.presets`, the builders ``meso4`` / ``mesoinception4``, the authors' weights
presets and the trained models shipped in ``mesonet_tf/assets``. TensorFlow is imported only
when a model is built, so ``import mesonet_tf`` stays cheap.
"""

from dfd import presets as _presets
from mesonet_tf import weights as _weights
from mesonet_tf.models import Meso4, MesoInception4, MesoNet

__all__ = ["Meso4", "MesoInception4", "MesoNet"]

_presets.register_builder("meso4", Meso4)
_presets.register_builder("mesoinception4", MesoInception4)
_weights.register_presets()
_weights.register_assets()
