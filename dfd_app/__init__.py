"""The app layer: every ``dfd`` command (:mod:`dfd_app.cli`), the detection pipeline over videos
(:mod:`dfd_app.detect`) and the HTTP service (:mod:`dfd_app.serve`).

It is the only layer that imports every other one (the core ``dfd``, the model packages,
``data_prep``); nothing imports it.
"""
