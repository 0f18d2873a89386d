"""Explanations: Grad-CAM maps of P(fake) per face (dfd.inference.explain), in
``dfd detect --explain`` (overlay PNGs, ``attention`` in JSONL) and in the service
(``?explain=true``: overlays on the thumbnails)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from dfd.inference import explain

SIZE = 32


def bright_model(size: int = SIZE):
    """conv (positive weights, ReLU) -> global mean -> dense (positive): P(fake) rises with
    brightness anywhere, so the evidence sits where the face is bright."""
    import keras

    x = keras.Input((size, size, 3), name="faces")
    h = keras.layers.Rescaling(1 / 255.0)(x)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv",
                            kernel_initializer=keras.initializers.Constant(0.05),
                            bias_initializer=keras.initializers.Constant(-0.2))(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(1, activation="sigmoid", name="p_fake",
                           kernel_initializer=keras.initializers.Constant(1.0),
                           bias_initializer=keras.initializers.Constant(-1.0))(h)
    return keras.Model(x, y, name="bright")


def face_with_patch(row: int, col: int, size: int = SIZE) -> np.ndarray:
    face = np.full((size, size, 3), 40, np.uint8)
    q = size // 4
    face[row * q:(row + 1) * q, col * q:(col + 1) * q] = 230
    return face


@pytest.fixture(scope="module")
def model():
    return bright_model()


def test_map_is_finite_nonnegative_normalised_and_follows_the_face(model):
    cam = explain.GradCAM(model)
    assert cam.layer.name == "conv"
    faces = np.stack([face_with_patch(0, 0), face_with_patch(3, 2)])
    heat = cam(faces)
    assert heat.shape == (2, SIZE, SIZE) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and (heat >= 0).all()
    np.testing.assert_allclose(heat.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert cam.evidence.all()
    assert not np.allclose(heat[0], heat[1])  # another face, another map
    # the map points at the bright patch (the only thing that raises P(fake))
    first, second = (explain.summarize(h) for h in heat)
    assert first["peak"][0] < 0.25 and first["peak"][1] < 0.25, first["peak"]
    assert 0.5 < second["peak"][0] < 0.75 and second["peak"][1] > 0.75, second["peak"]
    grid = np.asarray(first["grid"])
    assert grid.shape == (explain.GRID, explain.GRID) and abs(grid.sum() - 1) < 0.035  # 64 cells rounded to 3 decimals
    assert grid[:2, :2].sum() > 0.5
    # the layer's call is restored: the model scores as before
    np.testing.assert_allclose(model.predict(faces, verbose=0), model(faces.astype("float32")))
    assert "call" not in vars(cam.layer)


def test_no_evidence_gives_a_uniform_map_and_no_peak():
    import keras

    x = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv",
                            kernel_initializer="ones")(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(-1e-3))(h)
    cam = explain.GradCAM(keras.Model(x, y))
    heat = cam(np.full((1, SIZE, SIZE, 3), 100, np.uint8))
    assert not cam.evidence[0]
    np.testing.assert_allclose(heat[0], 1.0 / SIZE**2, rtol=1e-5)
    assert explain.summarize(heat[0], evidence=False)["peak"] is None


def test_target_layer_rule_mesonets_and_keras_applications():
    import keras

    from mesonet_tf import Meso4, MesoInception4

    assert explain.target_layer(Meso4(weights=None, input_shape=(64, 64, 3))).name == "block4_pool"
    assert explain.target_layer(MesoInception4(weights=None, input_shape=(64, 64, 3))).name == "block4_pool"
    eff = keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classes=1,
                                            classifier_activation="sigmoid")
    assert explain.target_layer(eff).name == "top_activation"
    # a keras.applications backbone inside the user's model: the backbone's output map
    inp = keras.Input((64, 64, 3))
    backbone = keras.applications.EfficientNetB0(weights=None, include_top=False,
                                                 input_shape=(64, 64, 3))
    out = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    wrapped = keras.Model(inp, out)
    cam = explain.GradCAM(wrapped)
    assert cam.layer is backbone
    faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    heat = cam(faces)
    assert heat.shape == (2, 64, 64) and np.isfinite(heat).all() and (heat >= 0).all()
    np.testing.assert_allclose(heat.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="spatial"):
        explain.target_layer(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]))


def test_overlay_is_the_face_size_and_coloured_where_hot():
    face = np.full((SIZE, SIZE, 3), 128, np.uint8)
    heat = np.zeros((SIZE, SIZE), np.float32)
    heat[:8, :8] = 1.0
    img = explain.overlay(face, heat / heat.sum())
    assert img.shape == face.shape and img.dtype == np.uint8
    assert img[2, 2, 0] > img[30, 30, 0]  # red where the map is hot, blue elsewhere


def _keras_ctx(model, **kw):
    from data_prep.faces.detectors import FakeDetector
    from dfd.inference.loading import scorer_from_keras
    from dfd.inference.scorers import ModelScorer
    from dfd_app.detect import pipeline

    kw.setdefault("extract_cfg", pipeline.make_extract_config(4, "uniform"))
    return pipeline.DetectContext(scorer=ModelScorer(scorer_from_keras(model), "bright"),
                                  detector=FakeDetector(None), **kw)


def test_detect_writes_overlays_and_attention(model, tmp_path):
    import cv2

    from dfd_app.detect import pipeline

    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), face_with_patch(0, 3, size=64)[..., ::-1])  # read at SIZE px
    ctx = _keras_ctx(model, crops=True, explain_dir=str(tmp_path / "ex"),
                     extract_cfg=pipeline.make_extract_config(4, "uniform", face_size=SIZE))
    rec = pipeline.detect_video(crop, ctx)
    assert rec["status"] == "ok", rec
    att = rec["frames"][0]["attention"]
    assert att["layer"] == "conv" and att["evidence"]
    assert att["peak"][0] > 0.75 and att["peak"][1] < 0.25  # the patch is top right
    (png,) = (tmp_path / "ex").glob("*/*.png")
    assert cv2.imread(str(png)).shape == (SIZE, SIZE, 3)
    json.dumps(rec)  # JSON-ready


def test_service_returns_overlays_when_asked(model, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from dfd_app.serve.service import ServiceSettings, create_app
    from tests.test_detect import SAMPLE

    ctx = _keras_ctx(bright_model(256))
    with TestClient(create_app(ctx, ServiceSettings(tmp_root=str(tmp_path)))) as client:
        def post(query):
            with open(SAMPLE, "rb") as fh:
                return client.post(f"/v1/detect?{query}", files={"file": ("a.mp4", fh, "video/mp4")})

        plain = post("faces=2").json()
        assert plain["thumbnails"] and "overlay_jpeg_base64" not in plain["thumbnails"][0]
        assert "attention" not in plain["frames"][0]
        res = post("faces=2&explain=true").json()
    thumb = res["thumbnails"][0]
    assert base64.b64decode(thumb["overlay_jpeg_base64"])[:2] == b"\xff\xd8"  # a JPEG
    assert thumb["overlay_jpeg_base64"] != thumb["jpeg_base64"]
    assert all("attention" in f for f in res["frames"])
