"""TensorFlow's CPU kernels as the package sets them up (dfd/__init__.py).

On x86, importing the package before TensorFlow turns TensorFlow's oneDNN kernels on (its
wheel leaves them off on many x86 CPUs, where Meso-4 then runs 2.5x slower); a user's own
``TF_ENABLE_ONEDNN_OPTS`` wins. Each case runs in a fresh interpreter: the setting is read
once, when TensorFlow is first imported.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from dfd import ONEDNN_MACHINES

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ONEDNN_MACHINES,
                                reason="oneDNN is only switched on by the package on x86")

PROBE = """
import sys
import {first}
import dfd
assert dfd.onednn_enabled() is None or "tensorflow" in sys.modules
import tensorflow
from tensorflow.python.util import _pywrap_util_port
assert dfd.onednn_enabled() == _pywrap_util_port.IsMklEnabled()
print("ONEDNN", dfd.onednn_enabled())
"""


def onednn_after_importing(first: str, setting: str | None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("ONEDNN ")]
    assert line, r.stdout
    return line[-1] == "ONEDNN True"


def test_model_package_import_turns_onednn_on():
    # mesonet_tf imports the core first, as every model package and the dfd command do
    assert onednn_after_importing("mesonet_tf", None) is True


def test_users_setting_wins():
    assert onednn_after_importing("dfd", "0") is False
