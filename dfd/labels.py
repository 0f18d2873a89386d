"""The one label convention of the package, stated once.

* ``FAKE = 1`` and ``REAL = 0``; ``UNKNOWN = -1`` marks items without a usable label
  (smoke-test clips, user uploads). Unknown items are never used for metrics or training.
* Every score the package produces is **P(fake)**, a probability in [0, 1].

Conversion happens at the boundary: the original MesoNet release outputs P(real) (its
classes were indexed alphabetically, ``df`` = 0, ``real`` = 1), so the model package that
loads those weights turns the output around where they enter the package (a frozen layer
computing ``sigmoid(-z) = 1 - P(real)``, or the flip folded into the last layer); nothing
downstream ever sees P(real).
"""

from __future__ import annotations

import numpy as np

FAKE = 1
REAL = 0
UNKNOWN = -1

LABEL_NAMES = {FAKE: "FAKE", REAL: "REAL", UNKNOWN: "UNKNOWN"}

_ALIASES = {
    "fake": FAKE,
    "df": FAKE,
    "deepfake": FAKE,
    "manipulated": FAKE,
    "1": FAKE,
    "real": REAL,
    "original": REAL,
    "pristine": REAL,
    "0": REAL,
    "unknown": UNKNOWN,
    "-1": UNKNOWN,
    "": UNKNOWN,
}


def parse_label(value) -> int:
    """Return FAKE, REAL or UNKNOWN for a label written in any of the accepted ways.

    Accepts DFDC's ``"FAKE"``/``"REAL"``, MesoNet's ``"df"``/``"real"``, ``"UNKNOWN"``,
    the integers 1/0/-1 and booleans. Raises ``ValueError`` naming the value otherwise.
    """
    if isinstance(value, bool):
        return FAKE if value else REAL
    if isinstance(value, (int, np.integer)) and int(value) in LABEL_NAMES:
        return int(value)
    if isinstance(value, float) and value in (0.0, 1.0, -1.0):
        return int(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNKNOWN
    key = str(value).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(
        f"unknown label {value!r}: expected one of FAKE/REAL/UNKNOWN (or df/real, 1/0/-1)"
    )


def label_name(label: int) -> str:
    """``1 -> "FAKE"``, ``0 -> "REAL"``, ``-1 -> "UNKNOWN"``."""
    try:
        return LABEL_NAMES[int(label)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"not a label value: {label!r} (expected 1, 0 or -1)") from None


UNCERTAIN = "UNCERTAIN"


def verdict(p_fake: float | None, threshold: float, uncertain: dict | None = None) -> str:
    """The verdict of a score.

    Without ``uncertain``: ``"FAKE"`` when ``p_fake >= threshold``, ``"REAL"`` below.
    With an uncertain band ``{"low": L, "high": H}`` (L <= threshold <= H; either may be None:
    that verdict is never given): ``"FAKE"`` when ``p_fake >= H``, ``"REAL"`` when
    ``p_fake < L``, ``"UNCERTAIN"`` in between. ``"UNKNOWN"`` without a score.
    """
    if p_fake is None or (isinstance(p_fake, float) and np.isnan(p_fake)):
        return LABEL_NAMES[UNKNOWN]
    if not uncertain:
        return LABEL_NAMES[FAKE] if p_fake >= threshold else LABEL_NAMES[REAL]
    high, low = uncertain.get("high"), uncertain.get("low")
    if high is not None and p_fake >= high:
        return LABEL_NAMES[FAKE]
    if low is not None and p_fake < low:
        return LABEL_NAMES[REAL]
    return UNCERTAIN
