"""Progress bars of the long-running steps (tqdm on stderr, with totals and ETA).

Every bar goes through :func:`bar`, so one switch turns them all off: :func:`set_enabled`
(``--no-progress`` on any ``dfd`` command). Bars are also off when stderr is not a terminal
(logs and CI stay clean).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

_ENABLED = True


def set_enabled(flag: bool) -> None:
    """Switch every progress bar of this process on or off."""
    global _ENABLED
    _ENABLED = bool(flag)


def enabled() -> bool:
    """Whether bars are shown: switched on and stderr is a terminal."""
    return _ENABLED and sys.stderr.isatty()


def bar(total: int | None = None, desc: str = "", unit: str = "it", **kw) -> tqdm:
    """A tqdm bar on stderr (``total`` known: percentage and ETA), disabled per :func:`enabled`."""
    kw.setdefault("disable", not enabled())
    kw["disable"] = kw["disable"] or not enabled()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **kw)
