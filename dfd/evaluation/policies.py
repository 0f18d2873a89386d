"""The evaluation's choices as names (no heavy imports: ``dfd <command> --help`` lists them
without loading scikit-learn)."""

from __future__ import annotations

#: how a video without a score counts: left out, or as this P(fake)
MISSING_POLICIES = {"exclude": None, "as_real": 0.0, "as_fake": 1.0, "as_half": 0.5}
#: how the decision threshold is set: as given, or where F1 / Youden's J is highest
THRESHOLD_POLICIES = ("fixed", "f1", "youden")
#: scores are clipped to [eps, 1 - eps] before the log loss
DEFAULT_CLIP = 1e-15
