"""Weights without a network: every missing-weights path ends in one line naming the file, where
it was looked for and where to get it (the fetch is made to fail as on a cluster node)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from dfd import presets  # noqa: E402
from dfd_app.cli.main import main  # noqa: E402
from temporal_tf import backbones, resnext  # noqa: E402

NO_NETWORK = "URL fetch failure on https://x: None -- [Errno -2] Name or service not known"


def _no_network(*args, **kwargs):
    raise Exception(NO_NETWORK)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network (keras' get_file fails like a DNS failure), empty weights and Keras caches."""
    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(keras.utils, "get_file", _no_network)
    monkeypatch.setattr(file_utils, "get_file", _no_network)
    monkeypatch.setenv(presets.ENV_DIR, str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path


def _the_error(caplog) -> str:
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is None
    msg = errors[0].getMessage()
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("command", ["export", "predict", "detect", "calibrate"])
def test_registered_weights_missing_offline_is_one_line_exit_2(offline, caplog, command):
    tmp = offline
    pd.DataFrame({"video_id": ["a", "b"], "label": ["FAKE", "REAL"], "p_fake": [0.8, 0.1]}
                 ).to_csv(tmp / "val.csv", index=False)
    (tmp / "face.png").write_bytes(b"")
    argv = {"export": ["--out", str(tmp / "e")],
            "predict": ["--shards", str(tmp), "--out", str(tmp / "p.csv")],
            "detect": [str(tmp / "face.png"), "--crops", "--no-progress"],
            "calibrate": ["--scores", str(tmp / "val.csv"), "--out", str(tmp / "c")]}[command]
    assert main(["-q", command, "--model", "meso4_df", *argv]) == 2
    msg = _the_error(caplog)
    assert "Meso4_DF.h5" in msg  # which file
    assert str(tmp / "weights") in msg and "$DFD_WEIGHTS_DIR" in msg  # where it was looked for
    assert "--weights-dir" in msg and "~/.cache/dfd/weights" in msg
    assert "https://github.com/DariusAf/MesoNet" in msg  # where to get it
    assert "Name or service not known" in msg  # why the download did not help
    assert "--model /path/to/Meso4_DF.h5" in msg


def test_keras_resnet_imagenet_offline_says_which_file(offline):
    with pytest.raises(FileNotFoundError) as err:
        backbones.ResNet50(weights="imagenet", input_shape=(32, 32, 3))
    msg = str(err.value)
    fname = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert "\n" not in msg and msg.count(fname) >= 2
    assert str(offline / "weights") in msg and "$DFD_WEIGHTS_DIR" in msg
    assert str(offline / "keras_home" / "models") in msg  # the Keras cache
    assert backbones.KERAS_RESNET_URL + fname in msg
    assert "Name or service not known" in msg and f"weights='/path/to/{fname}'" in msg


def test_keras_resnet_imagenet_file_in_the_weights_folder_is_used(offline, monkeypatch):
    seen = {}

    def fake_resnet(**kwargs):
        seen.update(kwargs)
        return keras.Sequential([keras.Input((4,))])

    monkeypatch.setattr(keras.applications, "ResNet152", fake_resnet)
    (offline / "weights").mkdir()
    f = offline / "weights" / "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5"
    f.write_bytes(b"h5")
    backbones.ResNet152(weights="imagenet", input_shape=(64, 64, 3))
    assert seen["weights"] == str(f)


def test_resnext_imagenet_is_the_converted_file_in_the_weights_folder(offline, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        resnext.ResNeXt101(weights="imagenet")
    msg = str(err.value)
    assert "resnext101_32x8d.npz" in msg and str(offline / "weights") in msg
    assert "$DFD_WEIGHTS_DIR" in msg and resnext.TORCHVISION_URLS["resnext101_32x8d"] in msg
    assert "docs/models.md" in msg and "\n" not in msg
    seen = {}
    monkeypatch.setattr(resnext, "ResNeXt", lambda *a, **kw: seen.update(kw))
    (offline / "weights").mkdir()
    np.savez(offline / "weights" / "resnext50_32x4d.npz", x=np.zeros(1))
    resnext.ResNeXt50(weights="imagenet")
    assert seen["weights"] == str(offline / "weights" / "resnext50_32x4d.npz")
