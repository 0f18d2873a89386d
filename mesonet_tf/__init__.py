"""MesoNet for TensorFlow/Keras: Meso-4 and MesoInception-4 with the authors' weights.

Every model here outputs P(fake) (see :mod:`dfd.labels`). Builders are imported lazily so
``import mesonet_tf`` does not import TensorFlow.
"""

__all__ = ["Meso4", "MesoInception4", "MesoNet"]


def __getattr__(name):
    if name in __all__:
        from mesonet_tf import models

        return getattr(models, name)
    raise AttributeError(f"module 'mesonet_tf' has no attribute {name!r}")
