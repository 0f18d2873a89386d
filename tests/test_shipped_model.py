"""The models shipped in mesonet_tf/assets: load without our code, P(fake), card, real detect."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dfd import presets
from dfd.inference.scorers import default_model
from dfd_app.detect import pipeline
from mesonet_tf import weights

ASSETS = Path(weights.ASSETS_DIR)
SHIPPED = sorted(ASSETS.glob("*.keras"))
SAMPLE = Path(__file__).resolve().parents[1] / "dfd_app" / "samples" / "astronaut.mp4"


def test_default_is_the_shipped_file_and_has_a_card():
    assert default_model() == str(ASSETS / "dfd_default.keras")
    card = (ASSETS / "MODEL_CARD.md").read_text()
    for stem in (p.stem for p in SHIPPED):
        assert f"`{stem}.keras`" in card
    assert "ROC-AUC" in card and "split **by `original`**" in card
    # the default was chosen on sources it never saw, and says so with its figures
    assert "mean cross-source validation ROC-AUC" in card and "95% CI" in card
    for kind in ("in-source", "cross-source", "the labelled clips", "Trained on:"):
        assert kind.lower() in card.lower(), kind


def test_default_preset_carries_calibration_and_a_cross_source_band():
    info = presets.get("dfd_default")
    assert info.calibration and "never saw" in info.calibration["fitted_on"]
    band = info.uncertain
    assert band["n"] >= 200 and band["min_precision"] == 0.8 and "never saw" in band["fitted_on"]
    for side, prec in (("low", "real_precision"), ("high", "fake_precision")):
        assert band[side] is None or band[prec] >= band["min_precision"]
    assert info.extra["trained_as"] and "fake_sources" in info.extra


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_model_loads_without_package_code(path):
    import keras

    info = json.loads(path.with_suffix(".json").read_text())  # its preset
    assert info["outputs"] == "p_fake" and info["architecture"] in presets.builder_names()
    assert info["sha256"] == presets.sha256_file(path) and info["face_margin"] == 1.06
    model = keras.models.load_model(path, compile=False)  # built-in layers only
    size = info["face_size"]
    assert model.input_shape == (None, size, size, 3)
    assert model.layers[-1].name == "p_fake"
    faces = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    p = model.predict(faces, verbose=0).ravel()
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    # registered under its stem, so `--model <stem>` works too
    again = weights.resolve_weights(path.stem)
    assert Path(again.path) == path


def test_detect_the_sample_clip_with_the_shipped_model():
    ctx = pipeline.build_context(n_frames=8)
    assert ctx.extract_cfg.margin == 1.06  # framed like the DFDC crops it was trained on
    rec = pipeline.detect_video(str(SAMPLE), ctx)
    assert rec["status"] == "ok" and rec["n_faces"] >= 6, rec
    assert 0.0 <= rec["p_fake"] <= 1.0 and not math.isnan(rec["p_fake"])
    assert rec["label"] in ("FAKE", "REAL", "UNCERTAIN") and rec["model"] == "dfd_default"
    # the quality facts travel with the verdict
    assert rec["face_px"] > 50 and rec["sharpness"] > 0 and 0 < rec["bpp"] < 24
    assert isinstance(rec["quality_warnings"], str)
