"""The authors' weights: registry, cache, checksums, exact loading and the P(real) flip."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dfd import presets  # noqa: E402
from dfd.inference.frames import load_face_images  # noqa: E402
from mesonet_tf import weights  # noqa: E402
from mesonet_tf.models import Meso4, MesoInception4  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

AUTHORS = {"meso4_df": Meso4, "meso4_f2f": Meso4,
           "mesoinception_df": MesoInception4, "mesoinception_f2f": MesoInception4}


@pytest.fixture
def cache(monkeypatch):
    d = shared_path("mesonet", "weights")
    monkeypatch.setenv(presets.ENV_DIR, str(d))
    return d


@pytest.fixture(scope="module")
def faces():
    root = shared_path("mesonet", "test_images")
    paths = sorted(root.glob("df/*.jpg")) + sorted(root.glob("real/*.jpg"))
    assert [p.name for p in paths] == ["df00204.jpg", "df01254.jpg", "real00240.jpg",
                                       "real00772.jpg"]
    return load_face_images(paths)


def test_registry_matches_the_published_checksums():
    sums = dict(line.split()[::-1] for line in
                shared_path("mesonet", "SHA256SUMS").read_text().splitlines() if line.strip())
    for name in AUTHORS:
        e = presets.get(name)
        assert sums[f"weights/{e.file}"] == e.sha256
        assert e.outputs == "p_real" and e.url.endswith(f"/weights/{e.file}")
    assert presets.get("mesonet_df").name == "meso4_df"  # alias
    with pytest.raises(KeyError, match="'nope'.*meso4_df"):
        presets.get("nope")


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_all_four_files_load_exactly(cache, name):
    model = AUTHORS[name](weights=name)
    assert model.layers[-1].name == "p_fake" and not model.layers[-1].trainable
    # every weighted layer took the file's arrays (none left at initial values)
    import h5py

    with h5py.File(cache / presets.get(name).file) as f:
        kernels = sorted(float(np.sum(f[n][w][()])) for n in f for w in f[n].attrs["weight_names"]
                         if w.decode().endswith("kernel:0"))
    ours = sorted(float(np.sum(w)) for layer in model.layers if layer.name != "p_fake"
                  for w in layer.get_weights()[:1] if layer.weights and "kernel" in layer.weights[0].path)
    np.testing.assert_allclose(ours, kernels, rtol=1e-6)


def test_meso4_df_parity_with_the_original(cache, faces):
    model = Meso4(weights="meso4_df")
    p_fake = model.predict(faces, verbose=0).ravel()
    np.testing.assert_allclose(p_fake, [0.959, 0.951, 0.010, 0.002], atol=0.01)
    # the original: the same topology without the flip, read as P(real)
    original = Meso4(weights=cache / "Meso4_DF.h5", weights_output="p_fake")
    assert original.layers[-1].name == "p_fake" and original.layers[-1].trainable
    p_real = original.predict(faces, verbose=0).ravel()
    np.testing.assert_allclose(p_fake, 1.0 - p_real, atol=1e-5)
    inner = keras.Model(model.input, model.get_layer("p_real").output)
    np.testing.assert_allclose(inner.predict(faces, verbose=0).ravel(), p_real, atol=1e-6)


def test_fold_flip_gives_a_plain_p_fake_model(cache, faces):
    flipped = MesoInception4(weights="mesoinception_df")
    folded = MesoInception4(weights="mesoinception_df", fold_flip=True)
    assert folded.layers[-1].name == "p_fake" and folded.layers[-1].trainable
    assert "p_real" not in [layer.name for layer in folded.layers]
    np.testing.assert_allclose(folded.predict(faces, verbose=0), flipped.predict(faces, verbose=0),
                               atol=1e-5)


def test_mesoinception_df_separates_the_test_faces(cache, faces):
    p = MesoInception4(weights="mesoinception_df").predict(faces, verbose=0).ravel()
    assert p[0] > 0.9 and p[1] > 0.9 and p[2] < 0.1 and p[3] < 0.1


def test_a_path_is_recognised_by_checksum(cache, faces):
    by_path = Meso4(weights=str(cache / "Meso4_F2F.h5"))  # auto -> p_real -> flipped
    by_name = Meso4(weights="meso4_f2f")
    assert by_path.get_layer("p_real") is not None
    np.testing.assert_array_equal(by_path.predict(faces, verbose=0), by_name.predict(faces, verbose=0))


def test_include_top_false_loads_the_convolutions(cache, faces):
    full = Meso4(weights="meso4_df")
    feats = Meso4(weights="meso4_df", include_top=False)
    ref = keras.Model(full.input, full.get_layer("block4_pool").output)
    np.testing.assert_allclose(feats.predict(faces, verbose=0), ref.predict(faces, verbose=0), atol=1e-6)


def test_wrong_architecture_is_refused(cache, tmp_path):
    import h5py

    with pytest.raises(ValueError, match="'meso4'"):
        MesoInception4(weights="meso4_df")
    # an unregistered Keras 2 file (checksum unknown) is checked layer by layer
    other = tmp_path / "other.h5"
    other.write_bytes((cache / "Meso4_DF.h5").read_bytes())
    with h5py.File(other, "a") as f:
        f.attrs["note"] = "changed"
    assert weights.resolve_weights(other).preset is None
    with pytest.raises(ValueError, match="does not hold mesoinception4"):
        MesoInception4(weights=other, weights_output="p_real")


def test_cache_checks_the_sha256(tmp_path):
    (tmp_path / "Meso4_DF.h5").write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        presets.locate("meso4_df", tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="DFD_WEIGHTS_DIR"):
        presets.locate("meso4_f2f", tmp_path, download=False)


def test_fetch_downloads_and_verifies(tmp_path, monkeypatch):
    src = shared_path("mesonet", "weights", "Meso4_DF.h5")
    entry = presets.get("meso4_df")
    fake = presets.ModelPreset(name="meso4_df_local", architecture="meso4", file="Meso4_DF.h5",
                               sha256=entry.sha256, url=src.as_uri(), outputs="p_real")
    monkeypatch.setitem(presets.REGISTRY, fake.name, fake)
    got = presets.locate("meso4_df_local", tmp_path / "cache")  # absent -> get_file(file://)
    assert got == tmp_path / "cache" / "Meso4_DF.h5" and presets.sha256_file(got) == entry.sha256
    bad = presets.ModelPreset(name="bad", architecture="meso4", file="Bad.h5", sha256="0" * 64,
                              url=src.as_uri())
    monkeypatch.setitem(presets.REGISTRY, "bad", bad)
    with pytest.raises(ValueError):
        presets.fetch("bad", tmp_path / "cache2")


def test_registered_local_model_loads_without_flip(tmp_path, monkeypatch):
    trained = Meso4(input_shape=(256, 256, 3))
    trained.save(tmp_path / "meso4_ours.keras")
    (tmp_path / "meso4_ours.json").write_text(json.dumps({"arch": "meso4", "description": "t"}))
    monkeypatch.setattr(presets, "REGISTRY", dict(presets.REGISTRY))
    assert weights.register_assets(tmp_path) == ["meso4_ours"]
    e = presets.get("meso4_ours")
    assert e.kind == "model" and e.outputs == "p_fake" and e.architecture == "meso4"
    again = Meso4(weights="meso4_ours")
    assert again.layers[-1].name == "p_fake" and again.layers[-1].trainable
    x = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(x, verbose=0), trained.predict(x, verbose=0))
    loaded = presets.build("meso4_ours")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        presets.register_local("x", tmp_path / "missing.keras")


def test_each_model_records_the_face_framing_it_was_trained_on(tmp_path, monkeypatch):
    from dfd.framing import DFDC_CROP_MARGIN, MESONET_CENTRE, MESONET_MARGIN

    for name in ("meso4_df", "mesonet_df", "meso4_f2f", "mesoinception_df", "mesoinception_f2f"):
        assert presets.face_margin_of(name) == MESONET_MARGIN
        assert presets.get(name).face_centre == MESONET_CENTRE  # MesoNet's nose middle
    for stem in ("dfd_default", "dfdc_meso4", "dfdc_mesoinception4"):  # the shipped assets' sidecars
        assert presets.face_margin_of(stem) == DFDC_CROP_MARGIN
        assert presets.get(stem).face_centre == 0.0  # DFDC's crops: the alignment centre
        assert presets.face_margin_of(weights.ASSETS_DIR / f"{stem}.keras") == DFDC_CROP_MARGIN
    assert presets.face_margin_of(tmp_path / "unknown.keras") is None
    monkeypatch.setattr(presets, "REGISTRY", dict(presets.REGISTRY))
    Meso4(input_shape=(32, 32, 3)).save(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(json.dumps({"arch": "meso4", "face_margin": 1.2}))
    weights.register_assets(tmp_path)
    assert presets.face_margin_of("m") == 1.2
    with pytest.raises(ValueError, match=r"face_margin of 'x' must be within \[0.5, 3\], got 13"):
        presets.register_local("x", tmp_path / "m.keras", face_margin=13)
    with pytest.raises(ValueError, match="must be a number, got 'wide'"):
        presets.register_local("x", tmp_path / "m.keras", face_margin="wide")
    with pytest.raises(ValueError, match=r"face_centre of 'x' must be within \[-0.5, 0.5\], got 0.7"):
        presets.register_local("x", tmp_path / "m.keras", face_centre=0.7)
    # a preset file written before the centre was recorded reads as the alignment centre
    old = presets.ModelPreset.from_dict({"name": "old", "face_margin": 1.3})
    assert old.face_centre == 0.0
    assert presets.ModelPreset.from_dict(old.replace(face_centre=-0.05).to_dict()).face_centre == -0.05
