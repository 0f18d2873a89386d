"""Choose the shipped default by generalisation (issue 10) and ship it with its model card.

    .venv/bin/python tools/ship_default.py --shards ../runs/shards_lm --out ../runs/ship \\
        --candidate lite0sbi=../runs/runs/lite0sbi/last.keras --trained-on lite0sbi=../runs/runs/lite0sbi \\
        --candidate lite0=../runs/runs/lite0/last.keras --trained-on lite0=../runs/runs/lite0 \\
        --reference dfdc_meso4 --trained-on dfdc_meso4=dfdc \\
        --clips ../runs/clips.txt --clip-labels ../shared/data --card-append MORE.md

Every candidate is judged on the sources whose fakes it never saw (``--trained-on NAME=RUN``:
its run folder or ``preset.json``, which records whose faces it trained on and from which
split; a candidate whose validation videos might hold faces it trained on is refused; a
``--reference`` may be given as text, ``dfdc|ffpp|dfdc+ffpp|none``): its **cross-source
validation ROC-AUC** is the mean over those sources of its ROC-AUC on their validation videos
(DFDC: the ``val`` split; FF++: the ``train`` and ``val`` identity groups, since no candidate
trained on FF++ is judged on it, and 44 validation videos alone are too few; but only the
``val`` groups, for every candidate, once one candidate judged on FF++ trained on the real
faces of FF++'s ``train`` groups (self-blended fakes made from them): all candidates are
judged on the same videos, and none on a video it trained on), each source's
ROC-AUC the mean over ``--condition`` s: by default the faces as stored and re-coded with H.264
at CRF 23 and 40 (FF++'s c23 and c40 levels; :mod:`dfd.evaluation.robustness`), since what a
user uploads has been compressed again. Nothing on a ``test`` split chooses anything. With
``--margin M`` the first ``--candidate`` (the default shipped now) is kept unless another's
mean beats its own by more than M (a lead within what a second training seed moves the mean
is noise). The chosen candidate is then

1. calibrated (Platt scaling fitted on those cross-source validation videos under every
   condition, folded into its output layer: a P(fake) for uploads, not for the faces as
   stored alone) and given its **uncertain band** chosen on the same scores
   (``dfd.evaluation.calibration.choose_uncertain_band``: precision >= 0.8 outside it within
   every source under every condition);
2. written to ``mesonet_tf/assets/dfd_default.keras`` with its preset ``dfd_default.json``
   (framed like the DFDC crops it trained on, ``face_margin`` 1.06);
3. scored on the **test** splits (DFDC's held-out groups, FF++'s 40 test videos; also all 280
   FF++ videos where it never saw FF++, which hold the FF++ videos that chose it, so the card
   calls those figures optimistic) and, through ``dfd detect``, on the labelled clips, each
   with a 95% bootstrap interval, beside ``--reference`` (a registered model, e.g. the former
   default) with paired differences, and under each condition, with the precision its
   verdicts reach on the test splits (the band's check on videos that did not choose it); all of it goes
   into ``MODEL_CARD.md``, whose sections on the other shipped models are kept (unless
   ``--card-append`` gives the card's end).

Scores are cached under ``--out/scores`` (delete a file to recompute it).

``--compare-only`` ships nothing: it makes the choice as above, then scores every candidate
on the test splits (and all FF++ videos where it never saw FF++) under each condition, with
paired differences against the first candidate, and writes the tables to ``--out``
(``selection.csv``, ``compare-per-source.csv``, ``compare-paired.csv``): how a new run
compares with the shipped default before anything is committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from dfd import presets
from dfd.evaluation.calibration import (
    BAND_CONFIDENCE,
    band_groups,
    calibrate_model,
    choose_uncertain_band,
    describe,
    verdict_precision,
)
from dfd.evaluation.compare import (
    auc_ci,
    clip_labels,
    clip_table,
    paired_table,
    per_source_table,
    source_matches,
    trained_on,
)
from dfd.evaluation.robustness import UPLOAD_CONDITIONS, load_videos, parse_condition, score_videos
from dfd.framing import DFDC_CROP_MARGIN
from dfd.inference.frames import predict_cached
from dfd.labels import parse_label
from dfd.scores import write_table
from dfd.training import averaging
from dfd.training.config import SBIConfig, TrainConfig
from dfd_app.detect import pipeline
from mesonet_tf.weights import ASSETS_DIR

log = logging.getLogger("ship_default")

SOURCES = {"csv:dfdc_faces": "DFDC", "csv:ffpp_faces": "FaceForensics++"}
DEFAULT_STEM = "dfd_default"


def scores(model: str, name: str, shards: str, out: Path, tag: str, **kwargs) -> pd.DataFrame:
    """``dfd predict``'s video table of ``model`` on ``shards`` (``split`` / ``only_source``
    in ``kwargs``), cached as ``out/scores/<name>-<tag>.csv``."""
    t = pd.read_csv(predict_cached(model, shards, out / "scores" / f"{name}-{tag}.csv",
                                   model_name=name, **kwargs))
    return t[t["status"].fillna("ok") == "ok"]


#: the parts of the shards a candidate is scored on: ``val`` and ``ffpp-train`` choose,
#: ``test`` and ``ffpp-all`` (every FF++ video, for models that never saw its fakes) report
PARTS = {"val": {"split": "val"},
         "ffpp-train": {"split": "train", "only_source": "csv:ffpp_faces"},
         "test": {"split": "test"},
         "ffpp-all": {"only_source": "csv:ffpp_faces"}}


class Held:
    """The shards' videos under upload conditions (:mod:`dfd.evaluation.robustness`): each
    part loaded, and degraded, once and only when a model's cached table of it is missing."""

    def __init__(self, shards: str, out: Path):
        self.shards, self.out, self.videos = shards, out, {}

    def _videos(self, part: str, condition: str):
        if (part, "stored") not in self.videos:
            if "all" not in self.videos:  # one pass over the shards for every part
                log.info("loading the faces of %s", self.shards)
                self.videos["all"] = load_videos(self.shards)
            self.videos[(part, "stored")] = self.videos["all"].select(**PARTS[part])
        if (part, condition) not in self.videos:
            self.videos[(part, condition)] = self.videos[(part, "stored")].degraded(condition)
        return self.videos[(part, condition)]

    def table(self, model: str, name: str, part: str, condition: str = "stored") -> pd.DataFrame:
        """``model``'s video table of ``part`` under ``condition`` (``stored``: ``dfd
        predict``'s), cached as ``out/scores/<name>-<part>[@<condition>].csv``."""
        if condition == "stored":
            return scores(model, name, self.shards, self.out, part, **PARTS[part])
        path = self.out / "scores" / f"{name}-{part}@{condition.replace(':', '')}.csv"
        if not path.exists():
            write_table(score_videos(model, self._videos(part, condition), model_name=name),
                        path)
        return pd.read_csv(path)


FFPP = "csv:ffpp_faces"
#: the parts the candidates are judged on: with FF++'s training groups, or without them
WITH_FFPP_TRAIN, VAL_ONLY = ("val", "ffpp-train"), ("val",)


def saw_ffpp_faces(seen: dict) -> bool:
    """Whether a model trained on any face of FF++, real or fake (its ``train_sources`` and
    ``fake_sources``; where ``train_sources`` is unknown, as for a reference given as text,
    its fakes' sources): "all of FF++" is no held-out set for it."""
    return source_matches(FFPP, [*(seen.get("train_sources") or []), *seen["fake_sources"]])


def check_judgeable(name: str, seen: dict) -> None:
    """Refuse a candidate whose validation videos might hold faces it trained on: for each
    source it is judged on (never saw its fakes), the real faces it trained on must be known
    and come from the ``train`` split only."""
    judged = [s for s in SOURCES if not source_matches(s, seen["fake_sources"])]
    if not judged:
        return
    if seen.get("train_sources") is None:
        raise SystemExit(f"{name}: the faces it trained on are unknown (--trained-on gave only "
                         "the sources of its fakes): give its run folder or preset.json, which "
                         "record train_sources and train_split")
    for s in judged:
        if source_matches(s, seen["train_sources"]) and seen.get("train_split") != "train":
            raise SystemExit(f"{name} trained on faces of {SOURCES[s]} from split "
                             f"{seen.get('train_split')!r}, not 'train': its validation videos "
                             f"may hold faces it trained on, so it cannot be judged on "
                             f"{SOURCES[s]}")


def selection_parts(trained: dict) -> tuple[str, ...]:
    """The validation parts every candidate is judged on: FF++'s ``train`` groups count only
    while no candidate that is judged on FF++ (never saw its fakes) trained on their faces."""
    reals_only = [n for n, t in trained.items()
                  if source_matches(FFPP, t.get("train_sources") or [])
                  and not source_matches(FFPP, t["fake_sources"])]
    if reals_only:
        log.info("%s trained on the real faces of FF++'s train groups: every candidate is "
                 "judged on FF++'s val groups only", ", ".join(sorted(reals_only)))
        return VAL_ONLY
    return WITH_FFPP_TRAIN


def selection_scores(model: str, name: str, held: Held, condition: str = "stored",
                     parts=WITH_FFPP_TRAIN) -> pd.DataFrame:
    """Validation videos of every source: DFDC's ``val`` split and FF++'s ``train`` + ``val``
    identity groups (``parts``: see :func:`selection_parts`), under ``condition``."""
    return pd.concat([held.table(model, name, part, condition) for part in parts],
                     ignore_index=True)


def cross_source(table: pd.DataFrame, seen: list[str]) -> dict[str, pd.DataFrame]:
    """The rows of each source whose fakes the model never saw, by source."""
    return {s: sub for s, sub in table.groupby("source") if not source_matches(s, seen)}


def upload_scores(model: str, name: str, held: Held, seen: list[str],
                  conditions=UPLOAD_CONDITIONS, parts=WITH_FFPP_TRAIN) -> pd.DataFrame:
    """The cross-source validation videos under every condition, one row per video and
    condition (column ``condition``): what the default's calibration and band are fitted on."""
    rows = [sub.assign(condition=c) for c in conditions
            for sub in cross_source(selection_scores(model, name, held, c, parts), seen).values()]
    return pd.concat(rows, ignore_index=True)


def choose(candidates: dict, trained: dict, held: Held, conditions=UPLOAD_CONDITIONS,
           margin: float = 0.0) -> tuple[str, pd.DataFrame]:
    """The candidate with the best mean cross-source validation ROC-AUC, and the table of all.

    A source's figure is the mean of its ROC-AUC under each of ``conditions`` (the videos as
    stored and re-coded as uploads are: :data:`UPLOAD_CONDITIONS`); the mean is over the
    sources whose fakes it never saw, so a candidate that saw one source's fakes is judged on
    the others alone. Each source's videos are the same for every candidate
    (:func:`selection_parts`). An exact tie goes to the candidate given first. With
    ``margin``, the candidate given first (the model shipped now) stays unless another's mean
    exceeds its own by more than ``margin``: a lead smaller than what a second training seed
    moves the mean by is noise, and a new default is new verdicts for every user.
    """
    for name in candidates:
        check_judgeable(name, trained[name])
    rows, parts = [], selection_parts({n: trained[n] for n in candidates})
    for name, model in candidates.items():
        seen = trained[name]["fake_sources"]
        by_condition = {c: cross_source(selection_scores(model, name, held, c, parts), seen)
                        for c in conditions}
        cross = by_condition[conditions[0]]
        if not cross:
            log.warning("%s saw the fakes of every source: it has no cross-source figure and "
                        "cannot be chosen", name)
            continue
        row = {"model": name, "trained_on": "+".join(seen) or "none"}
        for s, sub in cross.items():
            aucs = []
            for c in conditions:
                got = by_condition[c].get(s)
                if got is None:
                    raise SystemExit(f"{name}: no scores of {s} under {c!r}, though there are "
                                     f"under {conditions[0]!r}")
                aucs.append(auc_ci(got["label"], got["p_fake"], 0)[0])
                row[f"{s} {c}"] = aucs[-1]
            row[s] = float(np.mean(aucs))
            row[f"n {s}"] = len(sub)
        row["mean"] = float(np.mean([row[s] for s in cross]))
        rows.append(row)
    if not rows:
        raise SystemExit("no candidate has a source it never trained on")
    table = pd.DataFrame(rows).sort_values("mean", ascending=False, ignore_index=True,
                                           kind="stable")
    best, first = str(table["model"].iloc[0]), next(iter(candidates))
    means = table.set_index("model")["mean"]
    if best != first and first in means.index and means[best] - means[first] <= margin:
        log.info("%s leads %s by %.4f, within the margin of %.4f: %s stays", best, first,
                 means[best] - means[first], margin, first)
        return first, table
    return best, table


def same_model(a: Path, b: Path) -> bool:
    """Whether two ``.keras`` files hold the same architecture and the same weights, to the
    bit. Keras writes new bytes (zip and HDF5 timestamps) on every save, so a re-ship of an
    unchanged model would otherwise commit a new 14 MB blob."""
    import keras

    try:
        ma, mb = (keras.models.load_model(p, compile=False) for p in (a, b))
    except Exception as err:  # noqa: BLE001 - any unreadable file is replaced, and said
        log.warning("could not compare %s with %s (%s): replaced", a, b, err)
        return False
    wa, wb = ma.get_weights(), mb.get_weights()
    return (ma.to_json() == mb.to_json() and len(wa) == len(wb)
            and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb)))


def ship(model: str, name: str, cross: pd.DataFrame, run_preset, out: Path,
         rescore=None) -> presets.ModelPreset:
    """Calibrate ``model`` on ``cross`` (its cross-source validation videos), write it and its
    preset into the package's assets as the default, and choose its uncertain band.

    The band is chosen on the same videos **as the shipped file scores them**: it carries the
    calibration in its output layer, so a video's score is the mean of calibrated frames, not
    the calibration of the raw mean (they differ for videos of several frames).
    ``rescore(path, key)`` gives ``cross``'s table scored by the file at ``path`` (``key``: a
    cache name); without it (a caller with no shards) the band is chosen on ``cross``
    calibrated after the mean, which is exact for videos of one frame only."""
    cross_path = out / "scores" / f"{name}-selection-cross.csv"
    write_table(cross, cross_path)
    folder, scaling = calibrate_model(model, cross_path, out / "export", overwrite=True)
    exported = presets.read_preset(folder)
    dest = ASSETS_DIR / f"{DEFAULT_STEM}.keras"
    if dest.is_file() and same_model(dest, Path(folder) / "model.keras"):
        log.info("%s holds the same model and weights: kept as it is", dest)
    else:
        shutil.copyfile(Path(folder) / "model.keras", dest)
    digest = presets.sha256_file(dest)
    n = cross.groupby("source")["video_id"].nunique().sum()
    where = ", ".join(f"{SOURCES.get(s, s)} {sub['video_id'].nunique()}"
                      for s, sub in cross.groupby("source"))
    conditions = list(dict.fromkeys(cross["condition"])) if "condition" in cross else []
    under = (f"; each under {', '.join(f'`{c}`' for c in conditions)}" if len(conditions) > 1
             else "")
    fitted = (f"scores of the cross-source validation videos of the sources whose fakes {name} "
              f"never saw ({where}{under}; tools/ship_default.py)")
    cal = dict(scaling.to_dict(), fitted_on=fitted)
    extra = {k: v for k, v in (run_preset.extra if run_preset else {}).items()
             if k in ("train_sources", "fake_sources", "fakes", "sbi_ratio", "train_split",
                      "keras_version", "tensorflow_version")}
    extra["trained_as"] = name
    preset = exported.replace(
        name=DEFAULT_STEM, file=dest.name, sha256=digest, path=None, url=None,
        face_margin=exported.face_margin or DFDC_CROP_MARGIN, calibration=cal, uncertain=None,
        description=(f"{exported.architecture} ({name}), chosen by mean cross-source validation "
                     f"ROC-AUC over {n} videos; see MODEL_CARD.md"),
        extra=extra)
    if rescore is not None:  # the export, with the shipped preset beside it (its framing)
        rescored = Path(folder) / "model.keras"
        presets.write_preset(preset.replace(file=rescored.name,
                                            sha256=presets.sha256_file(rescored)),
                             Path(folder) / presets.PRESET_FILE)
        scored = rescore(str(rescored), f"{DEFAULT_STEM}.{name}.{digest[:8]}")
    else:
        scored = cross.assign(p_fake=scaling.apply(cross["p_fake"].to_numpy(float)))
    scored = scored[scored["status"].fillna("ok") == "ok"] if "status" in scored else scored
    band = choose_uncertain_band(
        [parse_label(v) for v in scored["label"]], scored["p_fake"].to_numpy(float), 0.5, 0.8,
        fitted_on=fitted + (", as the shipped file scores them" if rescore else ""),
        groups=band_groups(scored), confidence=BAND_CONFIDENCE, videos=scored["video_id"])
    preset = preset.replace(uncertain=band)
    presets.write_preset(preset, ASSETS_DIR / f"{DEFAULT_STEM}.json")
    log.info("shipped %s as %s: %s; band %s", name, dest, describe(scaling), band)
    return preset


def compare_candidates(models: dict, seen: dict, held: Held, conditions, bootstrap: int,
                       cached: dict | None = None, reference: str | None = None
                       ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per model, test set and condition: the ROC-AUC of the test split's sources and of all
    FF++ videos (for the models that never saw its fakes), with intervals; with ``reference``
    (one of ``models``) each other model's paired difference from it on the same videos, the
    test split and all FF++ apart. Returns ``(per_source, paired or None)``, column
    ``condition``; ``cached``: the names the models' score files go under (default: their
    own)."""
    cached = cached or {m: m for m in models}
    per, paired = [], []
    for c in conditions:
        tests = {m: held.table(spec, cached[m], "test", c) for m, spec in models.items()}
        all_ff = {f"{m} (all FF++)": held.table(spec, cached[m], "ffpp-all", c)
                  for m, spec in models.items() if not saw_ffpp_faces(seen[m])}
        both = {**tests, **all_ff}
        per.append(per_source_table(both, {k: seen[k.rsplit(" (", 1)[0]] for k in both},
                                    bootstrap).assign(condition=c))
        for group, ref in ((tests, reference), (all_ff, f"{reference} (all FF++)")):
            if reference is not None and ref in group and len(group) > 1:
                paired.append(paired_table(group, ref, bootstrap).assign(condition=c))
    return (pd.concat(per, ignore_index=True),
            pd.concat(paired, ignore_index=True) if paired else None)


def verdict_check(model: str, name: str, seen: dict, held: Held, conditions,
                  band: dict) -> pd.DataFrame:
    """The shipped band on the test videos under each condition: per test set, source and
    condition, the REAL and FAKE verdicts it gives and their precision, and the share decided.
    The test splits only: all of FF++ holds the videos that chose the band."""
    rows = []
    for part in ["test"]:
        for c in conditions:
            table = held.table(model, name, part, c)
            table = table[table["status"].fillna("ok") == "ok"]
            got = verdict_precision(table["label"], table["p_fake"], band, table["source"])
            for src, v in got.items():
                decided = sum(x[0] for x in (v["real"], v["fake"]) if x)
                rows.append({"test_set": part, "source": src, "condition": c, "n": v["n"],
                             "real": v["real"], "fake": v["fake"],
                             "decided": decided / v["n"] if v["n"] else float("nan"),
                             "kind": ("in-source" if source_matches(src, seen["fake_sources"])
                                      else "cross-source")})
    return pd.DataFrame(rows)


def detect_clips(model: str, name: str, clip_list: Path, out: Path) -> Path:
    """``dfd detect`` (32 frames, the model's own framing) on every clip of ``clip_list``."""
    path = out / "clips" / f"{name}.csv"
    if not path.exists():
        ctx = pipeline.build_context(model=model, n_frames=32, uncertain="off")
        clips = [line.strip() for line in clip_list.read_text().splitlines() if line.strip()]
        rows = [pipeline.detect_video(c, ctx) for c in clips]
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _f(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def other_sections(text: str) -> str:
    """The sections (``## `` headings) of a model card that are not about the default: what a
    new card keeps of the old one, so that shipping a default never drops the card's other
    models."""
    kept, keep = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            keep = not line.startswith(f"## `{DEFAULT_STEM}.keras`")
        if keep:
            kept.append(line)
    return "".join(kept)


def training(cfg: dict, depth: int = 0, unaveraged: bool = False) -> str:
    """How a run trained, from its saved config: its budget, and where its weights came from;
    a run fine-tuned from another run's model (``weights`` a file beside that run's
    ``config.json``) names that run and how it trained, in turn. ``unaveraged``: the model is
    the run's last-epoch weights (``unaveraged.keras``), not the mean its ``average_from``
    made."""
    init = (cfg.get("model_kwargs") or {}).get("weights")
    here = (f"{cfg.get('epochs')} epochs x {cfg.get('steps_per_epoch')} steps of "
            f"{cfg.get('batch_size')}, {cfg.get('optimizer')} lr {cfg.get('learning_rate')}, "
            f"loss {cfg.get('loss')}, seed {cfg.get('seed')}")
    if cfg.get("sam_rho"):
        here += f", sharpness-aware minimization (`--sam-rho {cfg['sam_rho']}`)"
    if cfg.get("fakes") in ("sbi", "both"):  # the self-blending settings that differ
        defaults = json.loads(json.dumps(dataclasses.asdict(SBIConfig())))
        changed = {k: v for k, v in (cfg.get("sbi") or {}).items() if defaults.get(k) != v}
        if changed:
            here += f", self-blended fakes with `--sbi '{json.dumps(changed)}'`"
    if cfg.get("average_from"):
        last = TrainConfig(epochs=cfg.get("epochs") or 1, phases=cfg.get("phases") or []).total_epochs
        span = f"epochs {cfg['average_from']}-{last}"
        here += (f", the weights at the end of its last epoch (`{averaging.UNAVERAGED_MODEL}`; "
                 f"the run's `last.keras` is their mean over {span}, not this model)"
                 if unaveraged else
                 f", its weights averaged over the ends of {span} "
                 f"(stochastic weight averaging, `--average-from {cfg['average_from']}`)")
    weights_file = bool(init) and str(init).endswith((".keras", ".h5")) and Path(str(init)).is_file()
    parent = Path(str(init)).parent / "config.json" if weights_file else None
    if parent is not None and parent.is_file() and depth < 5:
        before = json.loads(parent.read_text()).get("config") or {}
        return (f"fine-tuned from the model of run `{parent.parent.name}` for {here} (that run: "
                + training(before, depth + 1) + ")")
    return f"initialised from {init or 'random'} weights, {here}"


def _group(group: str) -> str:
    """``"csv:dfdc_faces@h264:40"`` as ``DFDC, `h264:40` ``."""
    src, _, cond = group.partition("@")
    return SOURCES.get(src, src) + (f", `{cond}`" if cond else "")


def _given(got: dict) -> str:
    said = [f"{side} {v[0]} ({v[1]:.2f})" for side, v in
            (("REAL", got.get("real")), ("FAKE", got.get("fake"))) if v]
    return ", ".join(said) or "no verdict"


def card(name: str, preset, selection: pd.DataFrame, figures: dict, reference: str,
         run_config: dict | None, append: str, conditions=("stored",),
         parts=WITH_FFPP_TRAIN, unaveraged: bool = False, margin: float = 0.0,
         incumbent: str = "") -> str:
    """MODEL_CARD.md: the default, how it was chosen, its figures, its band, then ``append``
    (``unaveraged``: the model is its run's last-epoch weights, see :func:`training`;
    ``margin``: :func:`choose`'s, with ``incumbent`` its first candidate)."""
    cfg = run_config or {}
    band, cal = preset.uncertain or {}, preset.calibration or {}
    per, paired = figures["per_source"], figures.get("paired")
    lines = [
        "# Model card: the shipped models", "",
        "Generated by `tools/ship_default.py`. The default is the candidate with the best "
        "**mean cross-source validation ROC-AUC**: scored on the sources whose fakes it never "
        "saw. No test split chose anything; the test figures below are reported once.", "",
        f"## `{DEFAULT_STEM}.keras`: {preset.architecture} ({name})", "",
        f"* Input: uint8 faces {preset.face_size}x{preset.face_size}, framed like DFDC's crops "
        f"(`face_margin` {preset.face_margin}); output P(fake), FAKE = 1.",
        f"* Trained on: REAL faces of {', '.join(SOURCES.get(s, s) for s in preset.extra.get('train_sources', [])) or '?'}"
        + (" only, each paired with a **self-blended fake** made from it (`--fakes sbi`): "
           "no real deepfake was seen in training" if preset.extra.get("fakes") == "sbi" else
           f"; fakes of {', '.join(SOURCES.get(s, s) for s in preset.extra.get('fake_sources', [])) or 'none'}") + ".",
    ]
    if cfg:
        lines.append(f"* Training: `dfd train --model {cfg.get('model')}`, " + training(cfg, unaveraged=unaveraged) + ".")
    lines += [
        f"* Calibration: Platt scaling a={cal.get('a', float('nan')):.3f}, "
        f"b={cal.get('b', float('nan')):+.3f}, fitted on {cal.get('n')} {cal.get('fitted_on')}.",
        "", "### How it was chosen", "",
        "Mean cross-source ROC-AUC on validation videos (DFDC: `val` split; FF++: "
        + ("the `train` and `val` identity groups" if "ffpp-train" in parts else
           "the `val` identity groups only, since a candidate trained on the real faces of its "
           "`train` groups; every candidate on the same videos")
        + "; a source counts only for models that never saw its fakes)"
        + (":" if len(conditions) < 2 else
           f", each source's figure the mean over {len(conditions)} conditions: "
           + ", ".join(f"`{c}`" for c in conditions) + " (in brackets, in that order; "
           "`h264:CRF`: each video's faces re-coded with H.264 at that CRF, FaceForensics++'s "
           "c23 and c40 levels being CRF 23 and 40; `dfd.evaluation.robustness`). Uploads are "
           "compressed again on their way to a user; a detector that only works on the "
           "faces as stored is not what a user gets:"),
        *(["", f"`{incumbent}`, the default before, stays the default unless another "
            f"candidate beats its mean by more than {margin:g} (`--margin`: about what a "
            "second training seed moves the mean by)."] if margin else []),
        "", "| candidate | fakes trained on | "
        + " | ".join(SOURCES.get(s, s) for s in SOURCES) + " | mean |",
        "|---|---|" + "---|" * len(SOURCES) + "---|"]
    for _, r in selection.iterrows():
        def cell(s, r=r):
            if pd.isna(r.get(s)):
                return "(seen)"
            each = (" (" + " / ".join(_f(r.get(f"{s} {c}")) for c in conditions) + ")"
                    if len(conditions) > 1 else "")
            return f"{_f(r.get(s))}{each}, {int(r[f'n {s}'])} videos"

        cells = [cell(s) for s in SOURCES]
        lines.append(f"| {'**' + r['model'] + '**' if r['model'] == name else r['model']} | "
                     f"{r['trained_on']} | " + " | ".join(cells) + f" | {_f(r['mean'])} |")
    seen = preset.extra.get("fake_sources") or []
    lines += ["", "### Test figures (95% bootstrap intervals over videos)", "",
              ("In-source figures: none. It trained on no source's fakes, so every figure "
               "below is cross-source: on fakes of a kind it never saw." if not seen else
               f"In-source: the test split of {', '.join(SOURCES.get(s, s) for s in seen)} "
               "(fakes of a kind it trained on, identity groups it never saw); cross-source: "
               "the other sources."), "",
              "| model | test set | kind | videos (FAKE) | ROC-AUC | 95% CI |",
              "|---|---|---|---|---|---|"]
    for _, r in per.iterrows():
        lines.append(f"| {r['model']} | {SOURCES.get(r['source'], r['source'])} "
                     f"{'all 280' if r['model'].endswith('(all FF++)') else 'test split'} | "
                     f"{r['kind']} | {r['n']} ({r['n_fake']}) | {_f(r['roc_auc'])} | "
                     f"{r['roc_auc_95ci']} |")
    clips = figures.get("clips")
    if clips is not None:
        for _, r in clips.iterrows():
            lines.append(f"| {r['model']} | the labelled clips (dfd detect, 32 frames) | video | "
                         f"{r['n']} ({r['n_fake']}) | {_f(r['roc_auc'])} | {r['roc_auc_95ci']} |")
    if per["model"].str.endswith("(all FF++)").any():
        chose = selection.loc[selection["model"] == name, f"n {FFPP}"]
        count = f"{int(chose.iloc[0])} " if len(chose) and pd.notna(chose.iloc[0]) else ""
        lines += ["", "*all 280*: every FF++ video, for the models that never saw FF++'s fakes. "
                  f"The {count}videos of its "
                  + ("`train` and `val`" if "ffpp-train" in parts else "`val`")
                  + " identity groups among them chose the default, its calibration and its "
                  "band (above), so its all-280 figures are optimistic; its held-out FF++ "
                  "figure is the test split's."]
    if paired is not None and len(paired):
        lines += ["", f"Paired against `{reference}` on the same videos (an interval that "
                  "excludes 0 is a measured difference):", "",
                  "| model | test set | ROC-AUC | reference | difference | 95% CI |",
                  "|---|---|---|---|---|---|"]
        for _, r in paired.iterrows():
            lines.append(f"| {r['model']} | {SOURCES.get(r['source'], r['source'])} | "
                         f"{_f(r['roc_auc'])} | {_f(r['reference_roc_auc'])} | "
                         f"{r['difference']:+.3f} | {r['difference_95ci']} |")
    under = figures.get("conditions")
    if under is not None and len(under) and len(conditions) > 1:
        lines += ["", "Under upload conditions (the same test videos, each video's faces degraded "
                  "before scoring; `dfd.evaluation.robustness`, `bench/robustness.py`):", "",
                  "| model | test set | kind | condition | ROC-AUC | 95% CI |",
                  "|---|---|---|---|---|---|"]
        for _, r in under.iterrows():
            lines.append(f"| {r['model']} | {SOURCES.get(r['source'], r['source'])} "
                         f"{'all 280' if r['model'].endswith('(all FF++)') else 'test split'} | "
                         f"{r['kind']} | `{r['condition']}` | {_f(r['roc_auc'])} | "
                         f"{r['roc_auc_95ci']} |")
    lo, hi = band.get("low"), band.get("high")
    lines += [
        "", "### Verdicts: FAKE / REAL / UNCERTAIN", "",
        f"The uncertain band (preset `uncertain`) was chosen on {band.get('n')} "
        f"cross-source validation scores ({band.get('n_fake')} FAKE"
        + (f"; each video under each of {len(conditions)} conditions" if len(conditions) > 1
           else "") + ") after calibration, for "
        f"precision >= {band.get('min_precision')} outside it"
        + (f" (over all of a side's verdicts at its one-sided {band['confidence']:.0%} lower "
           "confidence bound, each video counted once however many conditions it was scored "
           "under, so that no verdict rests on a handful of videos, and by point estimate "
           "within each group)" if band.get("confidence") else "") + ": "
        + (f"REAL below {_f(lo)} (precision {_f(band.get('real_precision'))})" if lo is not None
           else "**no score range reached it for REAL**") + "; "
        + (f"FAKE at or above {_f(hi)} (precision {_f(band.get('fake_precision'))})"
           if hi is not None else "**no score range reached it for FAKE**")
        + f"; {band.get('coverage', 0):.0%} of those get a verdict, the rest UNCERTAIN. "
        "The precision must hold within each source"
        + (" under each condition" if len(conditions) > 1 else "")
        + ", not only pooled. Per group (verdicts given, their precision):", ""]
    for group, got in (band.get("group_precision") or {}).items():
        lines.append(f"* {_group(group)} ({got['n']} videos): " + _given(got))
    checks = figures.get("verdicts")
    if checks is not None and len(checks):
        lines += ["", "The same band on the test videos, which chose nothing (its check; a "
                  "precision below the target here is what a user can expect instead):", "",
                  "| test set | condition | videos | REAL verdicts (precision) | "
                  "FAKE verdicts (precision) | decided |", "|---|---|---|---|---|---|"]
        for _, r in checks.iterrows():
            lines.append(
                f"| {SOURCES.get(r['source'], r['source'])} "
                f"{'all 280' if r['test_set'] == 'ffpp-all' else 'test split'} | "
                f"`{r['condition']}` | {r['n']} | "
                + " | ".join(f"{v[0]} ({v[1]:.2f})" if v else "none"
                             for v in (r["real"], r["fake"])) + f" | {r['decided']:.0%} |")
    lines += [
        "", "`--uncertain off` gives plain threshold verdicts at 0.5.",
        "", append.strip(), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True, help="shards holding both sources' crops")
    ap.add_argument("--out", required=True, help="working folder (scores, export)")
    ap.add_argument("--candidate", action="append", required=True, help="NAME=MODEL_FILE")
    ap.add_argument("--trained-on", action="append", default=[],
                    help="NAME=RUN: a candidate's run folder or preset.json (what it trained on, "
                         "from which split); a reference's may be the sources whose fakes it "
                         "saw (dfdc+ffpp, none)")
    ap.add_argument("--reference", help="a registered model to compare the default with")
    ap.add_argument("--clips", type=Path, help="a list of labelled clips for dfd detect")
    ap.add_argument("--clip-labels", help="the shared data folder with the clips' labels")
    ap.add_argument("--card-append", type=Path, help="markdown added to the card's end "
                    "(default: the sections of the card now shipped that are not about the "
                    "default, kept as they are)")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="the first --candidate (the model shipped now) stays unless another's "
                         "validation mean beats it by more than this (default 0: the best one)")
    ap.add_argument("--compare-only", action="store_true",
                    help="ship nothing: the choice, then every candidate's test figures and "
                         "paired differences against the first, written to --out")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--condition", action="append", dest="conditions", metavar="KIND[:VALUE]",
                    help="the conditions a candidate is judged under, each counting equally "
                         f"(default: {' '.join(UPLOAD_CONDITIONS)}: the faces as stored and "
                         "re-coded at FaceForensics++'s c23 and c40 levels); see "
                         "dfd.evaluation.robustness")
    args = ap.parse_args()
    if args.compare_only and (args.reference or args.clips or args.card_append):
        raise SystemExit("--compare-only compares the candidates with the first one and ships "
                         "nothing: --reference, --clips and --card-append are for shipping")
    if not 0.0 <= args.margin < 0.5:
        raise SystemExit(f"--margin must be in [0, 0.5), got {args.margin}")
    conditions = tuple(args.conditions or UPLOAD_CONDITIONS)
    try:
        for c in conditions:
            parse_condition(c)
    except ValueError as err:
        raise SystemExit(f"--condition: {err}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    candidates = dict(c.split("=", 1) for c in args.candidate)
    try:
        trained = {n: trained_on(s) for n, s in (t.split("=", 1) for t in args.trained_on)}
    except ValueError as err:
        raise SystemExit(f"--trained-on: {err}") from None
    missing = sorted(set(candidates) - set(trained))
    if missing:
        raise SystemExit(f"--trained-on missing for {missing}")

    held = Held(args.shards, out)
    name, selection = choose(candidates, trained, held, conditions, args.margin)
    log.info("cross-source validation ROC-AUC:\n%s", selection.to_string())
    if args.compare_only:
        out.mkdir(parents=True, exist_ok=True)
        selection.to_csv(out / "selection.csv", index=False)
        per, paired = compare_candidates(candidates, trained, held, conditions, args.bootstrap,
                                         reference=next(iter(candidates)))
        per.to_csv(out / "compare-per-source.csv", index=False)
        log.info("test figures:\n%s", per.to_string())
        if paired is not None:
            paired.to_csv(out / "compare-paired.csv", index=False)
            log.info("against %s (paired):\n%s", next(iter(candidates)), paired.to_string())
        log.info("chosen by the rule: %s; nothing shipped (--compare-only); tables in %s",
                 name, out)
        return 0
    model = candidates[name]
    run_dir = Path(model).parent
    parts = selection_parts({n: trained[n] for n in candidates})
    cross = upload_scores(model, name, held, trained[name]["fake_sources"], conditions, parts)
    preset = ship(model, name, cross, presets.read_preset(run_dir), out,
                  rescore=lambda path, key: upload_scores(
                      path, key, held, trained[name]["fake_sources"], conditions, parts))
    presets.register_folder(ASSETS_DIR)  # the new default under its stem

    shipped = str(ASSETS_DIR / f"{DEFAULT_STEM}.keras")
    models, seen = {DEFAULT_STEM: shipped}, {DEFAULT_STEM: trained[name]}
    if args.reference:
        models[args.reference] = args.reference
        seen[args.reference] = trained[args.reference]
    # cache names: the shipped file's scores, by the candidate it was made from and its digest
    # (a new calibration is a new file)
    cached = {m: (f"{DEFAULT_STEM}.{name}.{preset.sha256[:8]}" if m == DEFAULT_STEM else m)
              for m in models}
    # the test split, and all FF++ videos for the models that never saw its fakes, as stored
    # (the card's main table, paired with the reference) and under each condition
    per, paired = compare_candidates(models, seen, held, tuple(dict.fromkeys(
        ("stored", *conditions))), args.bootstrap, cached, args.reference)
    figures = {"per_source": per[per["condition"] == "stored"].drop(columns="condition")
               .reset_index(drop=True),
               "conditions": per[per["condition"].isin(conditions)].reset_index(drop=True)}
    if paired is not None:
        figures["paired"] = (paired[paired["condition"] == "stored"].drop(columns="condition")
                             .reset_index(drop=True))
    figures["verdicts"] = verdict_check(shipped, cached[DEFAULT_STEM], trained[name], held,
                                        conditions, preset.uncertain or {})
    if args.clips:
        tables = {m: pd.read_csv(detect_clips(spec, cached[m], args.clips, out))
                  for m, spec in models.items()}
        figures["clips"] = clip_table(tables, clip_labels(args.clip_labels), 0.5, args.bootstrap)
    log.info("test figures:\n%s", figures["per_source"].to_string())
    run_config = None
    if (run_dir / "config.json").is_file():
        run_config = json.loads((run_dir / "config.json").read_text()).get("config")
    card_path = ASSETS_DIR / "MODEL_CARD.md"
    if args.card_append:
        append = args.card_append.read_text()
    else:  # the other shipped models' sections of the card stay
        append = other_sections(card_path.read_text() if card_path.is_file() else "")
    text = card(name, preset, selection, figures, args.reference or "", run_config, append,
                conditions, parts, unaveraged=Path(model).name == averaging.UNAVERAGED_MODEL,
                margin=args.margin, incumbent=next(iter(candidates)))
    card_path.write_text(text)
    (out / "MODEL_CARD.md").write_text(text)
    (out / "figures.json").write_text(json.dumps(
        {k: v.to_dict(orient="records") for k, v in figures.items()
         if isinstance(v, pd.DataFrame)}, indent=2, default=str))
    log.info("card written: %s", ASSETS_DIR / "MODEL_CARD.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
