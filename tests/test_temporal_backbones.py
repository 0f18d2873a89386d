"""Backbones of the temporal model: registry, argument checks, ResNeXt architecture and weights.

Parameter counts pinned against torchvision. Keras counts BatchNormalization moving mean and
variance as (non-trainable) parameters, torch does not (they are buffers), so the torchvision
figures are compared with the Keras *trainable* count (conv kernels, BN gamma/beta, fc); the
Keras total is pinned too (trainable + 2 x BN channels).
"""

from __future__ import annotations

import numpy as np
import pytest

from temporal_tf import backbones, resnext


def n_trainable(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def tiny_resnext(**kw):
    kw.setdefault("input_shape", (32, 32, 3))
    return resnext.ResNeXt((1, 1), groups=4, width_per_group=2, base_planes=8, **kw)


@pytest.fixture(scope="module")
def resnext50_top():
    return resnext.ResNeXt50(include_top=True, input_shape=(64, 64, 3))


def test_resnext50_matches_torchvision_parameter_count(resnext50_top):
    # torchvision.models.resnext50_32x4d(): 25,028,904 parameters
    assert n_trainable(resnext50_top) == 25_028_904
    assert resnext50_top.count_params() == 25_097_128  # + 34,112 BN channels x 2 moving stats


def test_resnext50_torchvision_layout(resnext50_top):
    state = resnext.torchvision_state(resnext50_top)
    # 320 tensors in torchvision's state_dict, minus 53 num_batches_tracked buffers
    assert len(state) == 267
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.conv1.weight"].shape == (128, 64, 1, 1)
    assert state["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # 32 groups of 4
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (256, 8, 3, 3)
    assert state["layer4.2.conv2.weight"].shape == (1024, 32, 3, 3)
    assert state["layer4.2.bn3.running_var"].shape == (2048,)
    assert state["fc.weight"].shape == (1000, 2048)
    assert "layer1.1.downsample.0.weight" not in state  # identity shortcut


@pytest.mark.slow
def test_resnext101_matches_torchvision_parameter_count():
    model = resnext.ResNeXt101(include_top=True, input_shape=(64, 64, 3))
    assert n_trainable(model) == 88_791_336  # torchvision resnext101_32x8d


@pytest.mark.slow
def test_resnet152_parameter_count():
    model = backbones.ResNet152(include_top=True, input_shape=(64, 64, 3))
    assert model.count_params() == 60_419_944  # Keras ResNet152 documentation


def test_tiny_resnext_forward_and_grouped_conv():
    model = tiny_resnext(pooling="avg")
    conv = model.get_layer("conv2_block1_2_conv")
    assert conv.groups == 4
    assert tuple(conv.kernel.shape) == (3, 3, 2, 8)  # width 4*2, 8/4 input channels per group
    assert tuple(model.get_layer("conv3_block1_2_conv").kernel.shape) == (3, 3, 4, 16)
    out = model(np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32"))
    assert tuple(out.shape) == (2, 64)  # 4 * base_planes * 2 at the last stage
    assert np.isfinite(np.asarray(out)).all()


def test_resnet50_forward_shape_and_trainable_flag():
    model = backbones.get_backbone("resnet50", input_shape=(32, 32, 3), pooling="avg",
                                   trainable=False)
    assert model.trainable_weights == []
    out = model(np.zeros((1, 32, 32, 3), np.float32))
    assert tuple(out.shape) == (1, 2048)


def test_torchvision_state_round_trip_via_npz(tmp_path):
    rng = np.random.default_rng(1)
    src = tiny_resnext(include_top=True, classes=3)
    for layer in src.layers:  # non-trivial BN statistics so the test can fail
        if layer.name.endswith("_bn"):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
    path = tmp_path / "tiny.npz"
    state = resnext.torchvision_state(src)
    state["conv1_bn.num_batches_tracked"] = np.array(5)  # torch extra buffers are ignored
    np.savez(path, **state)
    dst = tiny_resnext(include_top=True, classes=3, weights=str(path))
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(dst(x)), np.asarray(src(x)), atol=1e-6)
    fresh = tiny_resnext(include_top=True, classes=3)
    assert not np.allclose(np.asarray(fresh(x)), np.asarray(src(x)), atol=1e-6)


def test_keras_weights_file_round_trip(tmp_path):
    src = tiny_resnext(pooling="avg")
    path = tmp_path / "tiny.weights.h5"
    src.save_weights(path)
    dst = tiny_resnext(pooling="avg", weights=str(path))
    x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(dst(x)), np.asarray(src(x)), atol=1e-6)


def test_torchvision_state_of_wrong_variant_is_refused():
    other = resnext.ResNeXt((1, 1), groups=2, width_per_group=2, base_planes=8,
                            input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="shape"):
        resnext.load_torchvision_state(tiny_resnext(), resnext.torchvision_state(other))
    with pytest.raises(ValueError, match="lacks"):
        resnext.load_torchvision_state(tiny_resnext(), {})


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": "/no/such/file.h5"}, "/no/such/file.h5"),
    ({"pooling": "sum"}, "'sum'"),
    ({"input_shape": (16, 16, 3)}, r"\(16, 16, 3\)"),
    ({"input_shape": (64, 64, 1)}, r"\(64, 64, 1\)"),
])
def test_resnext_argument_errors_echo_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnext.ResNeXt50(**kwargs)


def test_resnext_bad_structure_is_refused():
    with pytest.raises(ValueError, match="groups must be >= 1, got 0"):
        resnext.ResNeXt((1,), groups=0)
    with pytest.raises(ValueError, match="blocks"):
        resnext.ResNeXt(())


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": "/no/such/file.h5"}, "/no/such/file.h5"),
    ({"pooling": "sum"}, "'sum'"),
    ({"input_shape": (8, 8, 3)}, r"\(8, 8, 3\)"),
])
def test_resnet_argument_errors_echo_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbones.ResNet50(**kwargs)


def test_registry_names_and_preprocessing():
    assert sorted(backbones.BACKBONES) == ["resnet152", "resnet50", "resnext101", "resnext50"]
    assert backbones.canonical_name("ResNeXt50_32x4d") == "resnext50"
    assert backbones.preprocessing_for("resnet152") == "caffe"
    assert backbones.preprocessing_for("resnext101") == "torch"
    with pytest.raises(ValueError, match="'vgg16'"):
        backbones.get_backbone("vgg16")


def test_channel_affine_matches_reference_preprocessing():
    import keras

    rgb = np.random.default_rng(3).integers(0, 256, (4, 3)).astype("float32")
    kernel, bias = backbones.channel_affine("caffe")
    expected = keras.applications.resnet.preprocess_input(rgb[None, None].copy())[0, 0]
    np.testing.assert_allclose(rgb @ kernel + bias, expected, atol=1e-4)
    kernel, bias = backbones.channel_affine("torch")
    expected = (rgb / 255.0 - np.array(resnext.TORCH_MEAN)) / np.array(resnext.TORCH_STD)
    np.testing.assert_allclose(rgb @ kernel + bias, expected, atol=1e-5)
    with pytest.raises(ValueError, match="'bgr'"):
        backbones.channel_affine("bgr")
