"""Meso-4 / MesoInception-4 builders: exact parameter counts, layers, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mesonet_tf import models  # noqa: E402
from mesonet_tf.models import Meso4, MesoInception4  # noqa: E402


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("builder, expected", [(Meso4, 27_977), (MesoInception4, 28_615)])
def test_trainable_parameters_match_the_paper(builder, expected):
    model = builder()
    assert _trainable(model) == expected
    assert model.output.shape == (None, 1) and model.output.dtype == "float32"
    assert model.layers[-1].name == "p_fake"


def test_meso4_layers_follow_the_authors():
    m = Meso4()
    convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [
        (8, (3, 3)), (8, (5, 5)), (16, (5, 5)), (16, (5, 5))]
    assert all(c.padding == "same" and c.activation.__name__ == "relu" for c in convs)
    pools = [layer.pool_size for layer in m.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert pools == [(2, 2), (2, 2), (2, 2), (4, 4)]
    assert m.get_layer("rescale").scale == pytest.approx(1 / 255)
    assert m.get_layer("leaky_relu").negative_slope == pytest.approx(0.1)
    assert [d.rate for d in m.layers if isinstance(d, keras.layers.Dropout)] == [0.5, 0.5]
    assert m.get_layer("flatten").output.shape == (None, 1024)


def test_inception_blocks_have_dilated_branches():
    m = MesoInception4()
    assert m.get_layer("block1_concat").output.shape[-1] == 1 + 4 + 4 + 2
    assert m.get_layer("block2_concat").output.shape[-1] == 2 + 4 + 4 + 2
    assert m.get_layer("block1_b3_conv3x3_d2").dilation_rate == (2, 2)
    assert m.get_layer("block2_b4_conv3x3_d3").dilation_rate == (3, 3)
    assert m.get_layer("block3_conv").kernel_size == (5, 5)
    # every weighted layer has a place in the authors' creation order
    from mesonet_tf.weights import authors_layer_ranks

    ranks = authors_layer_ranks("mesoinception4")
    weighted = {layer.name for layer in m.layers if layer.weights and layer.name != "p_fake"}
    assert weighted == set(ranks) - {"p_real"} | {"fc1"}


def test_uint8_input_gives_probabilities_and_matches_float():
    m = Meso4(input_shape=(64, 64, 3))
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    p = m.predict(x, verbose=0)
    assert p.shape == (3, 1) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(m.predict(x.astype("float32"), verbose=0), p, atol=1e-6)


def test_include_top_false_gives_features():
    m = MesoInception4(include_top=False, input_shape=(64, 64, 3))
    assert m.output.shape == (None, 2, 2, 16)
    assert not any(isinstance(layer, keras.layers.Dense) for layer in m.layers)


def test_arguments_are_checked_with_the_value():
    with pytest.raises(ValueError, match="'meso5'"):
        models.MesoNet("meso5")
    with pytest.raises(ValueError, match=r"\(256, 256, 1\)"):
        Meso4(input_shape=(256, 256, 1))
    with pytest.raises(ValueError, match="too small"):
        Meso4(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"\(128, 128, 3\)"):
        Meso4(weights="meso4_df", input_shape=(128, 128, 3))
    with pytest.raises(ValueError, match="'nonsense'"):
        Meso4(weights="nonsense")
    with pytest.raises(ValueError, match="'p_maybe'"):
        Meso4(weights_output="p_maybe")


def test_keras_round_trip_needs_no_custom_code(tmp_path):
    m = MesoInception4(input_shape=(64, 64, 3))
    x = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    m.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")  # no custom_objects
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_mixed_precision_keeps_a_float32_head():
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = Meso4(input_shape=(32, 32, 3))
        assert m.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(old)


def _laplacian_valid(x):
    """numpy reference: 4-neighbour Laplacian of each channel, valid region, grey levels."""
    x = x.astype("float64")
    return (4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:])


def _filtered(model):
    return keras.Model(model.input, model.get_layer("highpass_norm").output)


def test_laplacian_input_filter_is_the_standardised_residual():
    m = Meso4(input_shape=(40, 48, 3), input_filter="laplacian")
    assert _trainable(m) == _trainable(Meso4(input_shape=(40, 48, 3)))  # nothing learnable added
    x = np.random.default_rng(2).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    got = _filtered(m).predict(x, verbose=0)
    assert got.shape == (2, 38, 46, 3)
    for i in range(2):
        r = _laplacian_valid(x[i])
        want = (r - r.mean()) / np.sqrt(r.var() + 1.0)
        np.testing.assert_allclose(got[i], want, atol=2e-3)


def test_laplacian_input_removes_brightness_contrast_and_sharpness_levels():
    m = Meso4(input_shape=(64, 64, 3), input_filter="laplacian")
    rng = np.random.default_rng(3)
    x = rng.integers(40, 200, (1, 64, 64, 3)).astype("float32")
    darker_flatter = (x - 40) * 0.4 + 10  # another brightness and contrast, same detail
    np.testing.assert_allclose(m.predict(darker_flatter, verbose=0), m.predict(x, verbose=0),
                               atol=1e-4)
    # a blurred face has far less detail, yet enters with the same unit spread as a sharp one
    blurred = (x + np.roll(x, 1, 1) + np.roll(x, 1, 2) + np.roll(x, (1, 1), (1, 2))) / 4
    f = _filtered(m)
    for face in (x, blurred):
        assert float(f.predict(face, verbose=0).std()) == pytest.approx(1.0, abs=0.01)
    assert _laplacian_valid(blurred[0]).var() < 0.5 * _laplacian_valid(x[0]).var()


def test_laplacian_filter_stays_fixed_and_round_trips(tmp_path):
    m = Meso4(input_filter="laplacian")  # 256 px: a weights file must fit the dense head
    before = m.get_layer("highpass").get_weights()[0].copy()
    m.trainable = True
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(4).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    y = np.array([0, 1] * 2, dtype="float32")[:, None]
    first = m.get_layer("block1_conv").get_weights()[0].copy()
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(m.get_layer("highpass").get_weights()[0], before)
    assert not np.allclose(m.get_layer("block1_conv").get_weights()[0], first)
    m.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")  # built-in layers only
    np.testing.assert_allclose(back.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)
    again = Meso4(input_filter="laplacian", weights=str(tmp_path / "m.keras"))  # a run continued from its own weights
    np.testing.assert_allclose(again.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_input_filter_is_checked(tmp_path):
    with pytest.raises(ValueError, match="'sobel'"):
        Meso4(input_filter="sobel")
    h5py = pytest.importorskip("h5py")
    legacy = tmp_path / "authors.h5"
    with h5py.File(legacy, "w") as f:  # what marks the authors' Keras 2 files
        f.attrs["layer_names"] = []
    with pytest.raises(ValueError, match="plain pixels"):
        Meso4(weights=str(legacy), input_filter="laplacian")
