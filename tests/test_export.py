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
from dfd.framing import MESONET_CENTRE  # noqa: E402
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
    assert doc["extra"]["inputs"] == {"faces": {"shape": [None, None, None, 3], "dtype": "uint8"}}
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
    assert info["inputs"]["faces"] == {"shape": [None, 3, None, None, 3], "dtype": "uint8"}
    assert info["input_kind"] == "clips" and info["clip_len"] == 3 and info["face_size"] == 8
    # clips of faces of another size are resized in the graph, each face as decode_face does
    big = rng.integers(0, 256, (4, 3, 13, 13, 3), dtype=np.uint8)
    small = np.stack([_resized(c, 8) for c in big])
    ref = model.predict([small, m.astype("float32")], verbose=0).ravel()
    np.testing.assert_allclose(sig(faces=big, mask=m)["p_fake"].numpy(), ref, atol=1e-6)
    meta = json.loads(tf.saved_model.load(str(out)).signatures["metadata"]()["preset"].numpy())
    assert meta["input_kind"] == "clips" and meta["clip_len"] == 3


def test_export_refuses_an_existing_version_and_overwrite_replaces_it(tmp_path):
    model = Meso4(input_shape=(32, 32, 3))
    first = export.export_savedmodel(model, tmp_path / "x", save_keras=False)
    assert first == tmp_path / "x" / "1" and (first / "saved_model.pb").exists()
    with pytest.raises(export.ExportExistsError, match="exists already.*--overwrite"):
        export.export_savedmodel(model, tmp_path / "x", save_keras=False)
    other = Meso4(input_shape=(32, 32, 3), name="other")
    assert export.export_savedmodel(other, tmp_path / "x", save_keras=False,
                                    overwrite=True) == first
    assert presets.read_preset(tmp_path / "x").extra["model_name"] == "other"
    assert not [p for p in (tmp_path / "x").iterdir() if p.name != "1"]  # no temp left over
    two = export.export_savedmodel(model, tmp_path / "x", save_keras=False, version=2)
    assert two == tmp_path / "x" / "2"
    assert loading.resolve_export(tmp_path / "x") == two  # the highest version
    assert loading.load_any(tmp_path / "x").name == "meso4"
    assert loading.load_any(first).name == "other"
    with pytest.raises(ValueError, match="positive integer"):
        export.export_savedmodel(model, tmp_path / "y", version=0)


def _one_error_line(caplog) -> str:
    """The one ERROR line ``dfd`` logged (and that it carries no traceback)."""
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    msg = errors[0].getMessage()
    assert "\n" not in msg and errors[0].exc_info is None
    return msg


def test_cli_export_into_an_existing_folder_is_one_line(tmp_path, caplog):
    src = tmp_path / "m.keras"
    Meso4(input_shape=(32, 32, 3)).save(src)
    out = tmp_path / "exp"
    assert cli.main(["export", "--model", str(src), "--out", str(out), "--no-keras"]) == 0
    caplog.clear()
    assert cli.main(["export", "--model", str(src), "--out", str(out)]) == 2
    err = _one_error_line(caplog)
    assert "exists already" in err and "--overwrite" in err and str(out / "1") in err
    assert cli.main(["export", "--model", str(src), "--out", str(out), "--overwrite"]) == 0
    assert (out / "1" / "model.keras").exists()
    assert cli.main(["export", "--model", str(src), "--out", str(out), "--version", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1", "3"]


def _resized(faces, size):
    """The package's own resize of each face (dfd.readers.decode_face on PNG bytes)."""
    from dfd import readers, schema

    return np.stack([readers.decode_face(schema.encode_png(f), size).numpy() for f in faces])


def test_export_takes_faces_of_any_size(exported):
    model, out = exported
    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert sig.structured_input_signature[1]["faces"].shape.as_list() == [None, None, None, 3]
    rng = np.random.default_rng(5)
    for side in (40, 64, 97):  # grow, as is, shrink (antialiased)
        f = rng.integers(0, 256, (3, side, side, 3), dtype=np.uint8)
        ref = model.predict(_resized(f, 64), verbose=0).ravel()
        np.testing.assert_allclose(sig(faces=tf.constant(f))["p_fake"].numpy(), ref, atol=1e-6)
        np.testing.assert_allclose(loading.load_any(out)(f), ref, atol=1e-6)


def test_the_preset_travels_inside_the_savedmodel(tmp_path):
    model = Meso4(input_shape=(64, 64, 3))
    out = export.export_savedmodel(model, tmp_path / "e", face_margin=1.06, source="test",
                                   extra_info={"calibration": {"a": 2.0, "b": -1.0}})
    side = presets.read_preset(out)
    loaded = tf.saved_model.load(str(out))
    text = loaded.signatures["metadata"]()["preset"].numpy().decode()
    assert presets.preset_from_json(text) == side
    assert json.loads((out / "assets" / "preset.json").read_text()) == json.loads(text)
    assert [p.name for p in (out / "assets").iterdir()] == ["preset.json"]
    assert sorted(p.name for p in out.iterdir()) == [
        "assets", "fingerprint.pb", "model.keras", "preset.json", "saved_model.pb", "variables"]
    (out / "preset.json").unlink()
    (out / "model.keras").unlink()
    for spec in (tmp_path / "e", out):  # the bare SavedModel, OUT or OUT/1
        assert presets.read_preset(spec) == side  # from assets/preset.json
        scorer = loading.load_any(spec)
        assert scorer.face_margin == 1.06 and scorer.preset.calibration == {"a": 2.0, "b": -1.0}
    (out / "assets" / "preset.json").unlink()
    assert presets.read_preset(out) is None
    assert loading.preset_of(tmp_path / "e") == side  # from the metadata signature
    assert loading.load_any(out).face_margin == 1.06


def test_authors_model_exports_p_fake(tmp_path, monkeypatch):
    from tests.conftest import shared_path

    monkeypatch.setenv("DFD_WEIGHTS_DIR", str(shared_path("mesonet", "weights")))
    assert cli.main(["export", "--model", "meso4_df", "--out", str(tmp_path / "df")]) == 0
    model = Meso4(weights="meso4_df")
    x = np.random.default_rng(3).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    ref = model.predict(x, verbose=0).ravel()
    np.testing.assert_allclose(loading.load_any(tmp_path / "df")(x), ref, atol=1e-6)
    back = keras.models.load_model(tmp_path / "df" / "1" / "model.keras")  # flip is a built-in layer
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
    assert export.read_model_info(authors)["face_centre"] == MESONET_CENTRE
    assert loading.load_any(authors).face_centre == MESONET_CENTRE
    assert loading.load_any(tight).face_centre == 0.0


#: run with ``python -I``: the package (and its editable-install finder) cannot be imported
PLAIN_TF = r"""
import importlib.abc, json, sys
BLOCKED = ("dfd", "dfd_app", "mesonet_tf", "temporal_tf", "data_prep")
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocker())
import os
_repo = os.path.realpath(sys.argv[3])
def _inside_repo(p):  # the checkout itself, not a virtual environment that lives in it
    real = os.path.realpath(p)
    return (real == _repo or real.startswith(_repo + os.sep)) and "site-packages" not in real
sys.path = [p for p in sys.path if p not in ("", ".") and not _inside_repo(p)]
import numpy as np
import tensorflow as tf
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        sys.exit(f"{name} is importable")
loaded = tf.saved_model.load(sys.argv[1])
faces = np.load(sys.argv[2], allow_pickle=True).item()
scores = {k: loaded.signatures["serving_default"](faces=tf.constant(v[None]))["p_fake"].numpy()
          .tolist() for k, v in faces.items()}
preset = json.loads(loaded.signatures["metadata"]()["preset"].numpy().decode())
print(json.dumps({"scores": scores, "preset": preset, "modules": sorted(
    m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


def test_plain_tf_scores_any_face_size_like_dfd_detect_crops(tmp_path):
    """The export, loaded by plain TensorFlow where this package cannot be imported, scores a
    224, a 256 and a 300 px face as ``dfd detect --crops`` scores the same crop files."""
    import csv

    from dfd import schema

    model = Meso4(name="meso4_plain")  # the package's 256 px input
    out = tmp_path / "export"
    export.export_savedmodel(model, out, face_margin=1.06, save_keras=False, source="test")
    (out / "1" / "preset.json").unlink()  # the bare SavedModel: no side file
    rng = np.random.default_rng(11)
    crops, faces = tmp_path / "crops", {}
    crops.mkdir()
    for side in (224, 256, 300):
        f = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        f[side // 4: side // 2] //= 3  # some structure, so resizing matters
        (crops / f"face{side}.png").write_bytes(schema.encode_png(f))
        faces[f"face{side}.png"] = f
    np.save(tmp_path / "faces.npy", faces, allow_pickle=True)
    res = subprocess.run([sys.executable, "-I", "-c", PLAIN_TF, str(out / "1"),
                          str(tmp_path / "faces.npy"), str(Path(__file__).resolve().parents[1])],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["modules"] == []
    assert got["preset"]["face_margin"] == 1.06 and got["preset"]["face_size"] == 256
    assert got["preset"]["resize_method"] == "bilinear"

    table = tmp_path / "detect.csv"
    assert cli.main(["-q", "detect", "--crops", "--model", str(out), str(crops),
                     "--out", str(table), "--no-progress"]) == 0
    rows = {Path(r["video"]).name: r for r in csv.DictReader(table.open())}
    assert sorted(rows) == sorted(faces)
    for name, (p,) in got["scores"].items():
        assert rows[name]["status"] == "ok"
        assert float(rows[name]["p_fake"]) == pytest.approx(p, abs=1e-4), name
    # and the Keras model on the package's own resize agrees too
    for name, f in faces.items():
        ref = float(model.predict(_resized(f[None], 256), verbose=0).ravel()[0])
        assert got["scores"][name][0] == pytest.approx(ref, abs=1e-5), name


def test_dfd_detect_frames_faces_as_the_bare_export_says(tmp_path):
    """The issue's case: without the side file, detect framed at 1.3 instead of 1.06."""
    from dfd_app.detect import pipeline

    out = export.export_savedmodel(Meso4(input_shape=(32, 32, 3)), tmp_path / "e",
                                   face_margin=1.06, save_keras=False)
    (out / "preset.json").unlink()
    for spec in (tmp_path / "e", out):
        ctx = pipeline.build_context(model=str(spec), detector="fake")
        assert ctx.extract_cfg.margin == pytest.approx(1.06)
        assert ctx.extract_cfg.face_size == 32  # the export's face size, not 256
    # so a crop scores as the export scores it, in one resize (not 50 -> 256 -> 32)
    from dfd import schema

    face = np.random.default_rng(9).integers(0, 256, (50, 50, 3), dtype=np.uint8)
    (tmp_path / "c.png").write_bytes(schema.encode_png(face))
    ctx = pipeline.build_context(model=str(out), detector="fake", crops=True)
    rec = pipeline.detect_video(tmp_path / "c.png", ctx)
    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert rec["p_fake"] == pytest.approx(float(sig(faces=face[None])["p_fake"][0]), abs=1e-6)
