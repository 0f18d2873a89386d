"""Frame models run through TensorFlow Lite's interpreter (XNNPACK kernels) instead of Keras.

The same weights, the same graph, another runtime: a Keras frame model (one uint8 face batch
``[N, H, W, 3]`` in, P(fake) out) is frozen and converted with TensorFlow's own converter
(``tf.lite.TFLiteConverter``; float32, no quantization), checked against Keras on probe faces
(largest difference at most :data:`TOLERANCE`), and cached on disk by the model's fingerprint
(architecture and weights), so the conversion (seconds) is paid once per model and machine.
Measured on the shipped 224 px default (docs/benchmarks.md): 32 faces in 0.18 s and 0.36
CPU-s against Keras's 0.32 s and 0.58 CPU-s, P(fake) equal to 1e-6.

``dfd detect`` / ``dfd serve`` use it by default (``--runtime auto``: TensorFlow Lite when the
model qualifies and the check passes and no GPU is visible, Keras otherwise, with a log line
saying why);
``--runtime keras`` keeps Keras; ``--runtime tflite`` makes it an error when it cannot run.
What does not qualify: temporal models (two inputs), models with a free face size, several
outputs, an install whose TensorFlow has no Lite converter or interpreter.

The cache: ``$DFD_CACHE_DIR/lite`` (default ``~/.cache/dfd/lite``), one ``.tflite`` file per
fingerprint and TensorFlow version, with a ``.json`` beside it recording the check. A file
that cannot be read is converted again; a folder that cannot be written leaves the converted
model in memory for this process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from dfd.quiet import stderr_fd_filtered

log = logging.getLogger(__name__)

#: ``--runtime`` values: TensorFlow Lite where the model qualifies, Keras, TensorFlow Lite or an error
RUNTIMES = ("auto", "keras", "tflite")
#: environment variable naming the cache root (its ``lite/`` folder holds converted models)
ENV_CACHE = "DFD_CACHE_DIR"
DEFAULT_CACHE = Path("~/.cache/dfd")
#: the largest P(fake) difference from Keras on the probe faces that a converted model may show
TOLERANCE = 1e-4
#: probe faces of the check: half uniform noise, half smooth gradients (seeded)
PROBE_FACES = 8
#: bump when the conversion changes, so old cache files are not reused
FORMAT = 1
#: TensorFlow Lite's notice when it builds its XNNPACK delegate (C++, straight to stderr)
_DELEGATE_NOTICE = "TensorFlow Lite XNNPACK delegate"


class LiteUnavailable(RuntimeError):
    """This model (or this install) cannot run through TensorFlow Lite; the message says why."""


def cache_dir() -> Path:
    """Where converted models are kept: ``$DFD_CACHE_DIR/lite``, else ``~/.cache/dfd/lite``."""
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser() / "lite"


def _tf():
    import tensorflow as tf

    return tf


def _interpreter_class():
    tf = _tf()
    cls = getattr(getattr(tf, "lite", None), "Interpreter", None)
    if cls is None:
        try:
            from ai_edge_litert.interpreter import Interpreter as cls  # TensorFlow's successor
        except ImportError:
            raise LiteUnavailable(f"TensorFlow {tf.__version__} has no tf.lite.Interpreter and "
                                  "ai_edge_litert is not installed") from None
    return cls


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU: ``auto`` then keeps Keras (TensorFlow Lite's interpreter
    runs on the CPU)."""
    try:
        return bool(_tf().config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001
        return False


def face_input_shape(model) -> tuple[int, int, int]:
    """``(H, W, 3)`` of a frame model's one fixed-size face input; :class:`LiteUnavailable`
    naming the shape otherwise."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1 or isinstance(getattr(model, "input", None), dict):
        raise LiteUnavailable(f"model {getattr(model, 'name', model)!r} takes {len(inputs)} inputs "
                              "(TensorFlow Lite runs frame models: one face batch)")
    shape = list(inputs[0].shape)
    if len(shape) != 4 or not shape[1] or not shape[2] or shape[3] != 3:
        raise LiteUnavailable(f"model {model.name!r} takes faces of shape {shape}; TensorFlow "
                              "Lite runs models of one fixed face size [N, H, W, 3]")
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1:
        raise LiteUnavailable(f"model {model.name!r} has {len(outputs)} outputs, not one")
    return int(shape[1]), int(shape[2]), 3


def fingerprint(model) -> str:
    """sha256 of a Keras model's architecture (its config) and every weight (dtype, shape,
    bytes): the cache key, so a retrained file at the same path is converted again."""
    h = hashlib.sha256()
    try:
        config = json.dumps(model.get_config(), sort_keys=True, default=str)
    except Exception as err:  # noqa: BLE001 - any model that cannot describe itself
        raise LiteUnavailable(f"model {model.name!r} has no config to fingerprint "
                              f"({type(err).__name__}: {err})") from None
    h.update(type(model).__name__.encode())
    h.update(config.encode())
    for w in model.weights:
        a = np.ascontiguousarray(np.asarray(w))
        h.update(f"{w.path}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def probe_faces(shape: tuple[int, int, int], n: int = PROBE_FACES) -> np.ndarray:
    """Seeded uint8 faces ``[n, H, W, 3]`` for the check: noise and smooth gradients."""
    rng = np.random.default_rng(0)
    h, w, c = shape
    faces = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n // 2, n):
        k = rng.uniform(0.2, 1.0, 3)
        ramp = (np.sin(xx[..., None] * k / 9.0 + yy[..., None] / 13.0 + i) + 1) * 127.5
        faces[i] = ramp.astype(np.uint8)
    return faces


def convert(model) -> bytes:
    """The model as a float32 TensorFlow Lite flatbuffer taking uint8 faces ``[N, H, W, 3]``.

    The graph is frozen first (Keras 3 keeps weights as resource variables, which the
    converter would otherwise leave out of the file)."""
    tf = _tf()
    h, w, c = face_input_shape(model)
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )
        converter_cls = tf.lite.TFLiteConverter
    except (ImportError, AttributeError) as err:
        raise LiteUnavailable(f"TensorFlow {tf.__version__} cannot convert models to "
                              f"TensorFlow Lite ({err})") from None

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], tf.uint8, name="faces")])
    def serve(faces):
        return model(tf.cast(faces, tf.float32), training=False)

    try:
        frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
        conv = converter_cls.from_concrete_functions([frozen], model)
        # the converter's MLIR diagnostics go to stderr from C++; its exception says enough
        with warnings.catch_warnings(), stderr_fd_filtered(lambda ln: True):
            warnings.simplefilter("ignore")
            return bytes(conv.convert())
    except Exception as err:  # noqa: BLE001 - tracing and the converter raise many kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise LiteUnavailable(f"TensorFlow Lite could not convert model {model.name!r} "
                              f"({type(err).__name__}: {first[:300]})") from None


def _threads() -> int:
    """The interpreter's threads: TensorFlow's intra-op setting when one is made, else the
    cores this process may use (what TensorFlow itself uses by default)."""
    try:
        n = int(_tf().config.threading.get_intra_op_parallelism_threads())
    except Exception:  # noqa: BLE001
        n = 0
    if n > 0:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LiteModel:
    """A converted frame model: ``lite(faces uint8 [N, H, W, 3]) -> float32 [N, k]``.

    One interpreter on ``threads`` threads, resized to each batch's length and used under a
    lock (an interpreter is not safe across threads). Faces must be uint8 already
    (:class:`dfd.inference.loading.Scorer` rounds other numbers before calling it)."""

    def __init__(self, blob: bytes, threads: int | None = None, name: str = "model"):
        self.blob, self.name = bytes(blob), name
        self.threads = int(threads or _threads())
        self._lock = threading.Lock()
        cls = _interpreter_class()
        with warnings.catch_warnings(), stderr_fd_filtered(lambda ln: _DELEGATE_NOTICE in ln):
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            try:
                self._it = cls(model_content=self.blob, num_threads=self.threads)
                inputs, outputs = self._it.get_input_details(), self._it.get_output_details()
                if len(inputs) != 1 or len(outputs) != 1:
                    raise ValueError(f"{len(inputs)} inputs and {len(outputs)} outputs")
                self._in, self._out = inputs[0]["index"], outputs[0]["index"]
                self.shape = tuple(int(v) for v in inputs[0]["shape"][1:])
                self._batch = None
                self._resize(1)  # packs the weights now, not on the first request
            except (ValueError, RuntimeError) as err:
                raise LiteUnavailable(f"TensorFlow Lite cannot load {name!r}: {err}") from None

    def __repr__(self):
        return f"LiteModel({self.name!r}, faces {self.shape}, threads={self.threads})"

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._it.resize_tensor_input(self._in, [n, *self.shape])
            self._it.allocate_tensors()
            self._batch = n

    def __call__(self, faces) -> np.ndarray:
        a = np.asarray(faces)
        if a.dtype != np.uint8 or a.ndim != 4 or tuple(a.shape[1:]) != self.shape:
            raise ValueError(f"model {self.name!r} takes uint8 faces [N, "
                             f"{', '.join(map(str, self.shape))}], got {a.dtype} {a.shape}")
        if not len(a):
            return np.zeros((0, 1), np.float32)
        with self._lock:
            self._resize(len(a))
            self._it.set_tensor(self._in, np.ascontiguousarray(a))
            self._it.invoke()
            return np.array(self._it.get_tensor(self._out), dtype=np.float32)


def score_gap(want, got) -> float:
    """How far two score arrays are apart, on the scale of :data:`TOLERANCE`: the largest
    |P(fake)| difference, or, when larger, the largest log-odds difference relative to the
    log-odds' size (at least 1), with a relative 1e-3 counted as :data:`TOLERANCE`. The second
    term sees differences in saturated scores (P near 0 or 1) that the first hides."""
    want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
    gap = float(np.max(np.abs(want - got))) if want.size else 0.0
    eps = 1e-300
    zw = np.log(np.clip(want, eps, 1.0)) - np.log(np.clip(1.0 - want, eps, 1.0))
    zg = np.log(np.clip(got, eps, 1.0)) - np.log(np.clip(1.0 - got, eps, 1.0))
    rel = np.abs(zw - zg) / np.maximum(1.0, np.abs(zw))
    # a relative log-odds difference of 1e-3 counts as the tolerance itself
    return max(gap, float(np.max(rel)) * TOLERANCE / 1e-3 if rel.size else 0.0)


def check(model, lite: LiteModel) -> tuple[float, np.ndarray]:
    """``(gap, scores)``: :func:`score_gap` between Keras and the converted model on
    :func:`probe_faces`, and the converted model's probe scores (kept with the cache file);
    :class:`LiteUnavailable` when the outputs differ in shape or are not finite."""
    faces = probe_faces(lite.shape)
    want = np.asarray(model.predict_on_batch(faces.astype(np.float32)), np.float64)
    got = np.asarray(lite(faces), np.float64)
    if want.shape != got.shape:
        raise LiteUnavailable(f"TensorFlow Lite gives outputs of shape {got.shape} where Keras "
                              f"gives {want.shape}")
    if not np.isfinite(got).all():
        raise LiteUnavailable("TensorFlow Lite gives non-finite scores on the probe faces")
    return score_gap(want, got), got


def _versions() -> str:
    import keras

    return f"tf{_tf().__version__}-keras{keras.__version__}-v{FORMAT}"


def _cache_files(key: str) -> tuple[Path, Path]:
    stem = f"{key[:40]}-{_versions()}"
    d = cache_dir()
    return d / f"{stem}.tflite", d / f"{stem}.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _from_cache(blob_path: Path, info_path: Path, shape, name: str) -> LiteModel | None:
    """The cached model when its file is the one converted and checked (sha256, input shape,
    and its scores on the probe faces as recorded then); None (a warning) otherwise."""
    try:
        info = json.loads(info_path.read_text())
        if info.get("refused"):
            raise LiteUnavailable(f"{info['refused']} (recorded in {info_path}; delete it to "
                                  "try again)")
        blob = blob_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
            raise ValueError("its sha256 is not the one recorded at conversion")
        lite = LiteModel(blob, name=name)
        if tuple(lite.shape) != tuple(shape):
            raise ValueError(f"it takes faces {lite.shape}, the model {tuple(shape)}")
        probes = np.asarray(info["probe_scores"], np.float64)
        got = np.asarray(lite(probe_faces(lite.shape)), np.float64)
        if got.shape != probes.shape or score_gap(probes, got) > TOLERANCE / 10:
            raise ValueError("its scores on the probe faces are not the ones recorded")
        return lite
    except LiteUnavailable:
        raise
    except Exception as err:  # noqa: BLE001 - any damage: converted again
        log.warning("%s: cached TensorFlow Lite model %s is unusable (%s); converting again",
                    name, blob_path, err)
        return None


def _refuse(info_path: Path, name: str, reason: str) -> None:
    """Record that this model does not convert, so the next run does not try again."""
    try:
        info_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(info_path, json.dumps({"model": name, "refused": reason}).encode())
    except OSError:
        pass


def lite_model(model, name: str | None = None) -> LiteModel:
    """The converted model of a Keras frame model: from the cache (checked: its file's
    sha256 and its scores on the probe faces), else converted, checked against Keras
    (:func:`score_gap` <= :data:`TOLERANCE`) and cached. :class:`LiteUnavailable` says why it
    cannot be had; a model that failed to convert is remembered in the cache and refused at
    once next time."""
    name = name or model.name
    shape = face_input_shape(model)
    policies = {str(getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32"))
                for layer in [model, *model.layers]}
    if policies - {"float32"}:
        raise LiteUnavailable(f"model {name!r} computes in {sorted(policies)} (mixed precision); "
                              "TensorFlow Lite runs it as float32 only")
    key = fingerprint(model)
    try:
        blob_path, info_path = _cache_files(key)
        cached = info_path.is_file()
    except (OSError, RuntimeError) as err:  # no home folder, a folder it cannot enter
        log.warning("%s: no TensorFlow Lite cache (%s); converting in memory", name, err)
        blob_path = info_path = None
        cached = False
    if cached:
        lite = _from_cache(blob_path, info_path, shape, name)
        if lite is not None:
            log.debug("%s: TensorFlow Lite model from %s", name, blob_path)
            return lite
    t0 = time.perf_counter()
    try:
        lite = LiteModel(convert(model), name=name)
        gap, probe_scores = check(model, lite)
    except LiteUnavailable as err:
        if info_path is not None:
            _refuse(info_path, name, str(err))
        raise
    if gap > TOLERANCE:
        reason = (f"TensorFlow Lite scores differ from Keras by {gap:.2g} on the probe faces "
                  f"(more than {TOLERANCE:g})")
        if info_path is not None:
            _refuse(info_path, name, reason)
        raise LiteUnavailable(reason)
    seconds = time.perf_counter() - t0
    log.info("%s: converted to TensorFlow Lite in %.1f s (largest difference from Keras on %d "
             "probe faces: %.1e)", name, seconds, PROBE_FACES, gap)
    if info_path is None:
        return lite
    info = {"model": name, "fingerprint": key, "versions": _versions(),
            "sha256": hashlib.sha256(lite.blob).hexdigest(), "max_abs_diff": gap,
            "tolerance": TOLERANCE, "probe_faces": PROBE_FACES,
            "probe_scores": probe_scores.tolist(), "input": list(lite.shape),
            "seconds": round(seconds, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        blob_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(blob_path, lite.blob)
        _write_atomic(info_path, json.dumps(info, indent=2).encode())
    except OSError as err:
        log.warning("%s: cannot keep the TensorFlow Lite model in %s (%s); it is converted "
                    "again next time (set $%s to a writable folder)", name, blob_path.parent,
                    err, ENV_CACHE)
    return lite
