"""Export: SavedModel signature, TFSMLayer / tf.saved_model.load parity, .keras and info round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from dfd import export, presets  # noqa: E402
from dfd.inference import loading  # noqa: E402
from dfd_app.cli import main as cli  # noqa: E402
from mesonet_tf.models import Meso4  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = Meso4(input_shape=(64, 64, 3))
    out = export.export_savedmodel(model, tmp_path_factory.mktemp("exp") / "meso4", source="test")
    return model, out


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)


def test_savedmodel_and_tfsmlayer_match_keras(exported, faces):
    model, out = exported
    ref = model.predict(faces, verbose=0).ravel()
    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    got = sig(faces=tf.constant(faces))
    assert list(got) == ["p_fake"] and got["p_fake"].dtype == tf.float32
    assert got["p_fake"].shape == (5,)
    np.testing.assert_allclose(got["p_fake"].numpy(), ref, atol=1e-6)
    layer = keras.layers.TFSMLayer(str(out), call_endpoint="serving_default")
    np.testing.assert_allclose(layer(faces)["p_fake"].numpy(), ref, atol=1e-6)
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        sig(faces=tf.constant(faces.astype("float32")))  # the signature takes uint8 only


def test_keras_file_and_info_round_trip(exported, faces):
    model, out = exported
    back = keras.models.load_model(out / "model.keras")
    np.testing.assert_array_equal(back.predict(faces, verbose=0), model.predict(faces, verbose=0))
    doc = json.loads((out / "preset.json").read_text())
    assert doc["extra"]["inputs"] == {"faces": {"shape": [None, 64, 64, 3], "dtype": "uint8"}}
    assert doc["outputs"] == "p_fake" and doc["extra"]["source_weights"] == "test"
    assert doc["face_size"] == 64 and doc["input_kind"] == "frames" and doc["kind"] == "model"
    preset = presets.read_preset(out)
    assert preset == presets.ModelPreset.from_dict(doc)  # the record round-trips
    info = export.read_model_info(out)
    assert info["inputs"] == doc["extra"]["inputs"] and info["face_margin"] is None


def test_load_any_gives_the_same_scores(exported, faces):
    model, out = exported
    ref = model.predict(faces, verbose=0).ravel()
    for spec in (out, out / "model.keras", model):
        scorer = loading.load_any(spec, batch_size=2)
        np.testing.assert_allclose(scorer(faces), ref, atol=1e-6)
    assert loading.load_any(out).kind == "savedmodel"
    assert loading.load_any(scorer) is scorer
    with pytest.raises(ValueError, match="'no-such-model'"):
        loading.load_any("no-such-model")


def test_saved_model_cli_lists_the_signature(exported):
    cli_bin = Path(sys.executable).parent / "saved_model_cli"
    if not cli_bin.exists():
        pytest.skip("saved_model_cli not installed")
    res = subprocess.run([str(cli_bin), "show", "--dir", str(exported[1]), "--all"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "signature_def['serving_default']" in res.stdout
    assert "inputs['faces']" in res.stdout and "DT_UINT8" in res.stdout
    assert "outputs['p_fake']" in res.stdout


def test_two_input_model_exports_faces_and_mask(tmp_path):
    faces_in = keras.Input((3, 8, 8, 3), name="faces")
    mask_in = keras.Input((3,), name="mask")
    x = keras.layers.Rescaling(1 / 255)(faces_in)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    x = keras.layers.Dense(1)(x)[..., 0]
    x = keras.layers.Multiply()([x, mask_in])
    y = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model([faces_in, mask_in], y)
    out = export.export_savedmodel(model, tmp_path / "temporal")
    rng = np.random.default_rng(2)
    f = rng.integers(0, 256, (4, 3, 8, 8, 3), dtype=np.uint8)
    m = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [0, 0, 0]], bool)
    ref = model.predict([f, m.astype("float32")], verbose=0).ravel()
    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert sig.structured_input_signature[1]["mask"].dtype == tf.bool
    np.testing.assert_allclose(sig(faces=f, mask=m)["p_fake"].numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(loading.load_any(out)(f, m), ref, atol=1e-6)
    info = export.read_model_info(out)
    assert info["inputs"]["mask"] == {"shape": [None, 3], "dtype": "bool"}


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        export.export_savedmodel(Meso4(input_shape=(32, 32, 3)), tmp_path / "x")


def test_authors_model_exports_p_fake(tmp_path, monkeypatch):
    from tests.conftest import shared_path

    monkeypatch.setenv("DFD_WEIGHTS_DIR", str(shared_path("mesonet", "weights")))
    assert cli.main(["export", "--model", "meso4_df", "--out", str(tmp_path / "df")]) == 0
    model = Meso4(weights="meso4_df")
    x = np.random.default_rng(3).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    ref = model.predict(x, verbose=0).ravel()
    np.testing.assert_allclose(loading.load_any(tmp_path / "df")(x), ref, atol=1e-6)
    back = keras.models.load_model(tmp_path / "df" / "model.keras")  # flip is a built-in layer
    np.testing.assert_allclose(back.predict(x, verbose=0).ravel(), ref, atol=1e-6)
    assert export.read_model_info(tmp_path / "df")["source_weights"] == "meso4_df"


def test_face_margin_travels_with_the_export(tmp_path, exported, faces):
    _, out = exported
    assert export.read_model_info(out)["face_margin"] is None  # source "test": unknown
    assert loading.load_any(out).face_margin is None
    model = Meso4(input_shape=(64, 64, 3))
    tight = export.export_savedmodel(model, tmp_path / "tight", face_margin=1.05)
    assert export.read_model_info(tight)["face_margin"] == 1.05
    assert loading.load_any(tight).face_margin == 1.05  # SavedModel
    assert loading.load_any(tight / "model.keras").face_margin == 1.05  # .keras beside its info
    # from a registered source the registry's margin is recorded (no download needed for this)
    authors = export.export_savedmodel(model, tmp_path / "authors", source="meso4_df",
                                       save_keras=False)
    assert export.read_model_info(authors)["face_margin"] == 1.3
