"""Inference: load any model (:mod:`.loading`) and score faces, clips and shards with it.

* :mod:`dfd.inference.loading`: ``.keras``, SavedModel, preset name -> :class:`Scorer`;
* :mod:`dfd.inference.frames`: single-face models over faces or shards (frame / video tables);
* :mod:`dfd.inference.clips`: temporal models over shards, clips cut by :mod:`dfd.readers`;
* :mod:`dfd.inference.scorers`: the scorers ``dfd detect`` uses (one model or a stacker).
"""
