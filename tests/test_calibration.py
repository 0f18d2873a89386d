"""Platt scaling: fitted values, folding into the model exactly, the CLI and its export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from dfd import export  # noqa: E402
from dfd.evaluation.calibration import (  # noqa: E402
    PlattScaling,
    fit_platt,
    fold_into_model,
    logit,
    output_layer,
)
from dfd.inference import loading
from dfd_app.cli import main as cli
from mesonet_tf.models import Meso4  # noqa: E402


def synthetic(n=4000, a=2.5, b=-0.4, seed=0):
    """Scores whose true calibration is known: labels drawn from sigmoid(a·logit(p) + b)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.2, 0.8, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * logit(p) + b)))).astype(int)
    return p, y


def test_fit_recovers_a_known_scaling_and_lowers_log_loss():
    from sklearn.metrics import log_loss, roc_auc_score

    p, y = synthetic()
    s = fit_platt(p, y, fitted_on="synthetic")
    assert s.a == pytest.approx(2.5, rel=0.15) and s.b == pytest.approx(-0.4, abs=0.15)
    assert (s.n, s.n_fake, s.fitted_on) == (4000, int(y.sum()), "synthetic")
    q = s.apply(p)
    assert log_loss(y, q) < log_loss(y, p) - 0.01
    assert roc_auc_score(y, q) == pytest.approx(roc_auc_score(y, p), abs=1e-12)  # ranking kept
    # by hand: sigmoid(a·logit(p) + b)
    assert s.apply([0.5])[0] == pytest.approx(1 / (1 + np.exp(-s.b)))
    assert PlattScaling.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_fit_drops_unusable_rows_and_refuses_bad_input():
    p, y = synthetic(400)
    s = fit_platt(np.r_[p, np.nan, 0.3], np.r_[y, 1, -1])  # NaN score, unknown label dropped
    assert s.n == 400
    with pytest.raises(ValueError, match="needs REAL and FAKE examples, got 3 REAL and 0 FAKE"):
        fit_platt([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="within \\[0, 1\\], got min -0.1"):
        fit_platt([-0.1, 0.5], [0, 1])
    with pytest.raises(ValueError, match="<= 0"):  # scores ranking the classes backwards
        fit_platt(1 - p, y)
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        fit_platt([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="needs 'a' and 'b'"):
        PlattScaling.from_dict({"a": 1.0})


def test_folding_gives_the_calibrated_scores_and_leaves_the_source_alone():
    keras.utils.set_random_seed(0)
    model = Meso4(input_shape=(32, 32, 3))
    x = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    raw = model.predict(x, verbose=0).ravel()
    s = PlattScaling(a=1.7, b=-1.0)
    cal = fold_into_model(model, s)
    got = cal.predict(x, verbose=0).ravel()
    np.testing.assert_allclose(got, s.apply(raw), atol=1e-5)
    assert np.abs(got - raw).max() > 1e-2
    np.testing.assert_allclose(model.predict(x, verbose=0).ravel(), raw)  # source untouched
    assert [type(la) for la in cal.layers] == [type(la) for la in model.layers]


def test_only_a_sigmoid_head_can_be_folded():
    inp = keras.Input((4,))
    linear = keras.Model(inp, keras.layers.Dense(1, name="p_fake")(inp))
    with pytest.raises(ValueError, match="does not end in Dense\\(1, sigmoid\\).*'linear'"):
        output_layer(linear)


def test_calibrate_command_writes_an_export_that_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = Meso4(input_shape=(32, 32, 3))
    src = tmp_path / "src"
    export.export_savedmodel(model, src, face_margin=1.06)
    p, y = synthetic(600, seed=2)
    table = pd.DataFrame({"video_id": [f"v{i}" for i in range(600)], "label": y, "p_fake": p,
                          "status": "ok"})
    table.loc[0, "status"] = "error"  # failed rows are not fitted on
    table.to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "cal"
    assert cli.main(["-q", "calibrate", "--model", str(src), "--scores", str(tmp_path / "val.csv"),
                     "--out", str(out)]) == 0
    info = export.read_model_info(out)
    s = PlattScaling.from_dict(info["calibration"])
    assert s.n == 599 and info["face_margin"] == 1.06
    x = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    raw = model.predict(x, verbose=0).ravel()
    want = s.apply(raw)
    assert np.abs(want - raw).max() > 1e-2  # the calibration is visible in the outputs
    np.testing.assert_allclose(loading.load_any(out)(x), want, atol=1e-5)  # SavedModel
    np.testing.assert_allclose(loading.load_any(out / "1" / "model.keras")(x), want, atol=1e-5)
    # a table without labels is refused with a clear message (exit 2)
    table.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    assert cli.main(["-q", "calibrate", "--model", str(src), "--scores",
                     str(tmp_path / "nolabel.csv"), "--out", str(tmp_path / "x")]) == 2


def test_calibrate_reads_text_labels_and_refuses_an_existing_export(tmp_path, caplog):
    """FAKE/REAL text labels (what `dfd evaluate` accepts) were read as 0 REAL and 0 FAKE; an
    existing output folder gave a FileExistsError traceback."""
    model = Meso4(input_shape=(32, 32, 3))
    src = tmp_path / "m.keras"
    model.save(src)
    p, y = synthetic(300, seed=6)
    pd.DataFrame({"video_id": [f"v{i}" for i in range(300)], "p_fake": p,
                  "label": np.where(y == 1, "FAKE", "REAL")}).to_csv(tmp_path / "val.csv",
                                                                       index=False)
    scaling = fit_platt(p, np.where(y == 1, "FAKE", "REAL"))
    assert (scaling.n, scaling.n_fake) == (300, int(y.sum()))
    args = ["-q", "calibrate", "--model", str(src), "--scores", str(tmp_path / "val.csv"),
            "--out", str(tmp_path / "cal")]
    assert cli.main(args) == 0
    assert export.read_model_info(tmp_path / "cal")["calibration"]["n_fake"] == int(y.sum())
    caplog.clear()
    assert cli.main(args) == 2  # one line, no traceback
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "exists already" in errors[0].getMessage() and "--overwrite" in errors[0].getMessage()
    assert cli.main(args + ["--overwrite"]) == 0


def test_authors_weights_are_folded_to_p_fake_then_calibrated(tmp_path, monkeypatch):
    from tests.conftest import shared_path

    monkeypatch.setenv("DFD_WEIGHTS_DIR", str(shared_path("mesonet", "weights")))
    p, y = synthetic(300, seed=4)
    pd.DataFrame({"video_id": [f"v{i}" for i in range(300)], "label": y, "p_fake": p}).to_csv(
        tmp_path / "val.csv", index=False)
    assert cli.main(["-q", "calibrate", "--model", "meso4_df", "--scores",
                     str(tmp_path / "val.csv"), "--out", str(tmp_path / "cal")]) == 0
    info = export.read_model_info(tmp_path / "cal")
    assert info["face_margin"] == 1.3  # the authors' framing travels with it
    s = PlattScaling.from_dict(info["calibration"])
    x = np.random.default_rng(5).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    raw = Meso4(weights="meso4_df").predict(x, verbose=0).ravel()  # P(fake)
    np.testing.assert_allclose(loading.load_any(tmp_path / "cal")(x), s.apply(raw), atol=1e-5)


def test_a_band_can_call_every_video_below_the_threshold_real():
    """The widest REAL side is every score below the threshold (not only below the highest
    of them), and no support asked of a side with no video is no error."""
    from dfd.evaluation.calibration import choose_uncertain_band

    y = [0] * 10 + [1] * 10
    p = list(np.linspace(0.05, 0.4, 10)) + list(np.linspace(0.6, 0.95, 10))
    band = choose_uncertain_band(y, p, 0.5, 0.8, fitted_on="synthetic", min_support=1)
    assert band["low"] == 0.5 and band["high"] == pytest.approx(0.6)
    assert band["coverage"] == 1.0
    only_fakes = choose_uncertain_band([1] * 5, [0.7] * 5, 0.5, 0.8, fitted_on="x",
                                       min_support=0, confidence=None)
    assert only_fakes["low"] is None and only_fakes["high"] == pytest.approx(0.7)
