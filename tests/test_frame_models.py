"""frame_tf: keras.applications backbones with a P(fake) head (weight-free, tiny inputs)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dfd import presets  # noqa: E402
from frame_tf import models  # noqa: E402
from frame_tf.models import EfficientNetB0, Xception  # noqa: E402


@pytest.fixture(scope="module")
def effnet():
    keras.utils.set_random_seed(0)
    return EfficientNetB0(input_shape=(32, 32, 3))


def test_output_is_float32_p_fake_from_uint8(effnet):
    assert effnet.output.shape == (None, 1) and effnet.output.dtype == "float32"
    assert effnet.layers[-1].name == "p_fake"
    assert effnet.get_layer("backbone").name == "backbone"
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    p = effnet.predict(x, verbose=0)
    assert p.shape == (3, 1) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(effnet.predict(x.astype("float32"), verbose=0), p, atol=1e-5)


def test_xception_scales_inputs_to_minus_one_one():
    m = Xception(input_shape=(71, 71, 3), include_top=False)
    layer = m.get_layer("scale_inputs")
    assert layer.scale == pytest.approx(1 / 127.5) and layer.offset == pytest.approx(-1.0)
    assert m.output.shape == (None, 2048)


def test_builders_are_registered_for_dfd_train():
    assert {"efficientnetb0", "xception"} <= set(presets.builder_names())
    from dfd.training.config import TrainConfig

    TrainConfig(model="efficientnetb0", train=["x"])  # accepted by name
    with pytest.raises(ValueError, match="'efficientnetb9'"):
        TrainConfig(model="efficientnetb9", train=["x"])


@pytest.mark.parametrize("kwargs, bad", [
    ({"input_shape": (16, 16, 3)}, "(16, 16, 3)"),
    ({"input_shape": (64, 64, 1)}, "(64, 64, 1)"),
    ({"weights": "no/such/file.keras"}, "no/such/file.keras"),
    ({"weights": 3}, "3"),
    ({"pooling": "mean"}, "'mean'"),
    ({"dropout": 1.5}, "1.5"),
    ({"include_top": "yes"}, "'yes'"),
])
def test_bad_arguments_are_echoed(kwargs, bad):
    with pytest.raises(ValueError) as err:
        EfficientNetB0(**kwargs)
    assert bad in str(err.value)


def test_xception_too_small_and_unknown_backbone():
    with pytest.raises(ValueError, match=r"\(64, 64, 3\).*>= 71"):
        Xception(input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="'resnet9'"):
        models.FrameNet("resnet9")


def test_saved_model_loads_without_package_code(effnet, tmp_path):
    path = tmp_path / "m.keras"
    effnet.save(path)
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    want = effnet.predict(x, verbose=0)
    # a fresh interpreter that cannot import frame_tf (nor dfd) loads and runs it
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('frame_tf', 'dfd', 'mesonet_tf'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, keras\n"
        f"m = keras.models.load_model({str(path)!r}, compile=False)\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), want, atol=1e-5)


def test_weights_from_a_saved_model_fine_tune_start(effnet, tmp_path):
    path = tmp_path / "m.keras"
    effnet.save(path)
    again = EfficientNetB0(weights=str(path), input_shape=(32, 32, 3))
    x = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(again.predict(x, verbose=0), effnet.predict(x, verbose=0),
                               atol=1e-5)
    # fully convolutional: the same weights fit another input side
    assert EfficientNetB0(weights=str(path), input_shape=(48, 48, 3)).count_params() == \
        effnet.count_params()
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="other.keras.*other shapes"):
        EfficientNetB0(weights=str(tmp_path / "other.keras"), input_shape=(32, 32, 3))


def test_detect_scorer_resizes_faces_to_the_model_side(effnet):
    """dfd detect crops 256-px faces; a 32-px model gets them resized (it used to fail)."""
    import cv2

    from dfd.inference.loading import load_any
    from dfd.inference.scorers import ModelScorer

    scorer = ModelScorer(load_any(effnet), "e")
    assert scorer.face_side == 32
    faces = np.random.default_rng(3).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in faces])
    np.testing.assert_allclose(scorer(faces), effnet.predict(small, verbose=0).ravel(),
                               atol=1e-5)
