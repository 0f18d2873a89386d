"""Comparing models on one test split: score tables in, the study's comparison table out.

:func:`compare` is what ``dfd compare`` runs: every model's video table, the plain average
and a fitted stacker, each judged by :func:`dfd.evaluation.metrics.evaluate`, written as
``comparison.csv`` / ``comparison.md`` beside a full report. :func:`read_models` reads named
score tables and their labels (also for ``dfd stack``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dfd import presets, schema
from dfd.evaluation import report, stacking
from dfd.evaluation.metrics import apply_labels, evaluate, prepare
from dfd.evaluation.policies import DEFAULT_CLIP
from dfd.evaluation.stacker import (
    Stacker,
    average_scores,
    build_features,
    input_status,
    is_frame_table,
    stacked_table,
    video_labels,
)
from dfd.labels import FAKE, REAL, UNKNOWN, parse_label
from dfd.scores import read_table, video_scores

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["model", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc",
                 "roc_auc_95ci", "log_loss", "n"]


def read_models(specs: list[tuple[str, Path]], labels_path=None) -> tuple[dict, pd.Series]:
    """Read the named tables and the labels per video (tables' labels, then the labels file)."""
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    tables = {n: read_table(p) for n, p in specs}
    labels = video_labels(tables)
    if labels_path:
        extra = pd.read_csv(labels_path, dtype={"video_id": str})
        extra = pd.Series([parse_label(v) for v in extra["label"]], index=extra["video_id"])
        both = extra.index.intersection(labels.index)
        clash = [v for v in both if extra[v] != UNKNOWN and extra[v] != labels[v]]
        if clash:
            raise ValueError(f"labels file {labels_path} disagrees with the score tables for "
                             f"{len(clash)} video(s): {clash[:10]}")
        labels = extra[extra != UNKNOWN].combine_first(labels).astype(int)
    return tables, labels


def video_table(name: str, t: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    if is_frame_table(t):
        t = video_scores(t, "mean", labels.to_dict(), model=name)
    return apply_labels(t, labels.to_dict())


def derived_tables(tables: dict, labels: pd.Series, stacker: Stacker | None, average: bool) -> dict:
    """The stacker's and the average's video tables from the models' tables (one split)."""
    out = {}
    if len(tables) > 1 or stacker is not None:
        feats = build_features(tables)  # raises naming the model when the video sets differ
        status = input_status(tables)
        if average and len(tables) > 1:
            out["average"] = stacked_table(feats, average_scores(feats), labels, "average",
                                           "average", status)
        if stacker is not None:
            lacking = sorted(set(stacker.models) - set(tables))
            if lacking:
                raise ValueError(f"stacker needs model(s) {lacking}; give --scores NAME=PATH for each")
            sub = feats[[c for c in feats.columns if c.split(":")[0] in stacker.models]]
            out["stacker"] = stacked_table(sub, stacker.predict_features(sub), labels, status=status)
    return out


def stacker_val_scores(vtables: dict, vlabels: pd.Series, stacker: Stacker,
                        direct: pd.DataFrame) -> pd.DataFrame:
    """The stacker's validation scores for choosing its threshold, honestly.

    A stacker fitted on these very validation videos scores them in-sample (too well); then,
    and when the stacker records no fit set, the threshold is chosen on out-of-fold scores of
    the same stacker (same features and C) refitted K-fold on them.
    """
    feats = build_features(vtables)
    sub = feats[stacker.feature_names]
    same = stacker.fitted_on(sub, vlabels)
    if same is False:
        return direct
    log.info("stacker threshold chosen on 5-fold out-of-fold scores of the validation videos "
             "(%s)", "it was fitted on them" if same else "its fit set is not recorded")
    oof = stacking.oof_predict(sub, vlabels, C=stacker.C)
    table = stacked_table(sub.loc[oof.index], oof, vlabels, status=input_status(vtables))
    table.attrs["threshold_scores"] = "out-of-fold"
    return table


def comparison_table(results: dict) -> pd.DataFrame:
    rows = []
    for name, r in results.items():
        v, ci = r["video"], r["video"].get("ci", {}).get("roc_auc", {})
        rows.append({"model": name, "threshold": r["threshold"]["value"],
                     **{k: v.get(k) for k in TABLE_COLUMNS[2:8] if k != "roc_auc_95ci"},
                     "roc_auc_95ci": (f"[{ci['low']:.3f}, {ci['high']:.3f}]"
                                      if ci.get("low") is not None else ""),
                     "log_loss": v.get("log_loss"), "n": v.get("n")})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "n/a"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def compare(models, vals, out, labels_path=None, stacker_path=None, average: bool = True,
            threshold_policy: str = "fixed", threshold: float = 0.5, missing: str = "exclude",
            bootstrap: int = 1000, seed: int = 0, log_loss_clip: float = DEFAULT_CLIP,
            trained=None, clips=None, clip_data=None, reference: str | None = None) -> dict:
    """Every model (``[(name, path)]`` of test score tables), the plain average and a stacker
    on one test split; writes ``comparison.csv`` / ``comparison.md`` and a report to ``out``.

    ``vals``: ``[(name, path)]`` validation tables for threshold policies other than fixed.
    Per source (tables with a ``source`` column): ``per_source.csv`` and
    ``generalisation.csv`` (mean in-/cross-source ROC-AUC), in-source meaning the model saw
    that source's fakes, from ``trained``: ``[(name, spec)]`` (:func:`trained_on`). With
    ``clips`` (``[(name, dfd detect table)]``) and ``clip_data`` (the folder of
    ``dfdc_videos`` / ``other_videos``): ``clips.csv``, figures on the labelled clips. With
    ``reference`` (a model's name): ``paired.csv``, every other model's ROC-AUC difference from
    it per source, with paired bootstrap intervals.
    Returns ``{"table", "markdown", "report", "results", "per_source", "summary"[, "clips"]
    [, "paired"]}``.
    """
    trained = {n: trained_on(spec) for n, spec in (trained or [])}  # a bad one before any work
    tables, labels = read_models(models, labels_path)
    val_specs = dict(vals)
    unknown = sorted(set(val_specs) - set(tables))
    if unknown:
        raise ValueError(f"validation tables {unknown} match no model; models are {sorted(tables)}")
    stacker = Stacker.load(stacker_path) if stacker_path else None
    tests = {n: video_table(n, t, labels) for n, t in tables.items()}
    tests.update(derived_tables(tables, labels, stacker, average))
    vals: dict[str, pd.DataFrame] = {}
    if val_specs:
        vtables, vlabels = read_models(list(val_specs.items()), labels_path)
        vals = {n: video_table(n, t, vlabels) for n, t in vtables.items()}
        if set(val_specs) == set(tables):
            vals.update(derived_tables(vtables, vlabels, stacker, average))
            if stacker is not None and threshold_policy != "fixed":
                vals["stacker"] = stacker_val_scores(vtables, vlabels, stacker, vals["stacker"])
    results, curves = {}, {}
    for name, t in tests.items():
        if threshold_policy != "fixed" and name not in vals:
            raise ValueError(f"threshold policy {threshold_policy!r} needs validation scores "
                             f"for {name!r}: give --val for every model")
        results[name] = evaluate(t, None, vals.get(name), threshold_policy, threshold,
                                 missing, bootstrap, seed, log_loss_clip)
        if name in vals and vals[name].attrs.get("threshold_scores") == "out-of-fold":
            results[name]["threshold"]["chosen_on"] = "out-of-fold validation scores"
        used, _ = prepare(t, missing)
        curves[name] = (used["label"].to_numpy(int), used["p_fake"].to_numpy(float))
    table = comparison_table(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    md = to_markdown(table)
    gen = generalisation({n: tests[n] for n in tables}, trained,
                         dict(clips or []), clip_data, threshold, bootstrap, seed, missing,
                         reference)
    extra_tables = {}
    for key, file, title in (("per_source", "per_source", "ROC-AUC per source"),
                             ("summary", "generalisation", "In-source vs cross-source"),
                             ("clips", "clips", "Labelled clips (dfd detect)"),
                             ("paired", "paired", "Against the reference (paired bootstrap)")):
        if key in gen and len(gen[key]):
            gen[key].to_csv(out / f"{file}.csv", index=False)
            md += f"\n{title}\n\n" + to_markdown(gen[key])
            extra_tables[title] = gen[key]
    (out / "comparison.md").write_text(md)
    main = "stacker" if "stacker" in results else max(
        results, key=lambda n: results[n]["video"].get("roc_auc") or -1)
    figs = report.render_figures(out, curves, main, results[main])
    scores = pd.concat([t.assign(model=n) for n, t in tests.items()], ignore_index=True)
    metrics = {"models": results, "threshold_policy": threshold_policy, "featured": main,
               "stacker": str(stacker_path or "")}
    metrics["generalisation"] = {k: v.astype(object).where(v.notna(), None).to_dict("records")
                                 for k, v in gen.items()}
    report.write_report(out, metrics, scores, figs,
                        {"Comparison (video level)": table, **extra_tables},
                        title="Model comparison")
    return {"table": table, "markdown": md, "report": out / report.HTML_FILE, "results": results,
            **gen}


def _auc(y, p) -> float | None:
    ok = np.isfinite(p)
    y, p = np.asarray(y)[ok], np.asarray(p)[ok]
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def fit_stacker(models, labels_path=None, C: float = 1.0, seed: int = 0, oof: int = 5,
                out=None) -> tuple[Stacker, pd.DataFrame | None]:
    """Fit the stacker on the named tables (``[(name, path)]``, held-out videos), with a fit
    report (each input's AUC alone, the average's, K-fold out-of-fold AUC when ``oof``) in
    ``stacker.fit_report``; saved to ``out`` when given. Returns the stacker and the
    out-of-fold video table (None without ``oof``)."""
    tables, labels = read_models(models, labels_path)
    feats = build_features(tables)
    st = stacking.fit(feats, labels, C=C, seed=seed)
    y = labels.reindex(feats.index)
    lab = y.isin([REAL, FAKE]).to_numpy()
    report = {"input_auc": {c: _auc(y[lab], feats.loc[lab, c].to_numpy(float)) for c in feats.columns}}
    report["input_auc"]["average"] = _auc(y[lab], average_scores(feats)[lab].to_numpy(float))
    oof_table = None
    if oof:
        scores = stacking.oof_predict(feats, labels, oof, C, seed)
        report["oof_auc"] = _auc(labels.reindex(scores.index).to_numpy(int), scores.to_numpy())
        report["oof_folds"] = scores.attrs["folds"]  # fewer than asked where a class is small
        oof_table = stacked_table(feats.loc[scores.index], scores, labels, aggregation="stack-oof")
    st.fit_report = report
    if out is not None:
        st.save(out)
    return st, oof_table


# ------------------------------------------------------------------ per source, cross source

PER_SOURCE_COLUMNS = ["model", "source", "kind", "roc_auc", "roc_auc_95ci", "n", "n_fake"]
CLIP_COLUMNS = ["model", "roc_auc", "roc_auc_95ci", "accuracy", "n", "n_fake", "n_unscored"]
PAIRED_COLUMNS = ["model", "reference", "source", "roc_auc", "reference_roc_auc", "difference",
                  "difference_95ci", "n"]
IN_SOURCE, CROSS_SOURCE, UNKNOWN_KIND = "in-source", "cross-source", "unknown"


def source_matches(source: str, names) -> bool:
    """Whether shard source ``source`` (``csv:dfdc_faces``) is one of ``names``, by the
    schema's rule (:func:`dfd.schema.match_sources`: in full, ``dfdc_faces`` or ``dfdc``)."""
    return any(n and schema.match_sources(n, [source]) for n in map(str, names))


def trained_on(spec) -> dict:
    """What a model trained on, from ``spec``: a run folder, preset file (``preset.json``, or
    a shipped model's ``<stem>.json``) or model file (a run's, or a registered one) whose
    preset records ``fake_sources`` (``dfd train`` writes it); or a list of the sources
    whose fakes it saw, ``"dfdc+ffpp"`` (``"none"``: no source's, e.g. self-blended fakes
    only). Returns ``{"fake_sources": [...], "train_sources": [...] or None, "train_split":
    ...}``: ``train_sources`` (whose faces, real or fake, it trained on) and ``train_split``
    (the manifest split they came from; ``"all"`` for every split) are known from a preset
    only; a list given as text leaves them ``None`` (unknown) and adds ``"as_text": True``."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():  # a run's preset, else a registered model's (a package asset)
        preset = presets.read_preset(path) or presets.find_by_path(path)
        if preset is None or "fake_sources" not in preset.extra:
            raise ValueError(f"{text!r} records no 'fake_sources' (a preset.json of a run of "
                             "dfd train does); give the sources instead, e.g. dfdc+ffpp")
        known = "train_sources" in preset.extra
        return {"fake_sources": list(preset.extra["fake_sources"]),
                "train_sources": list(preset.extra["train_sources"] or []) if known else None,
                "train_split": (preset.extra.get("train_split") or "all") if known else None}
    if text.strip().lower() == "none":
        return {"fake_sources": [], "train_sources": None, "train_split": None}
    names = [n.strip() for n in text.split("+") if n.strip()]
    if not names or any(_looks_like_a_path(n) for n in names):
        raise ValueError(f"trained-on {text!r} is neither an existing run folder / preset.json "
                         "nor a list of sources like dfdc+ffpp (or 'none')")
    return {"fake_sources": names, "train_sources": None, "train_split": None, "as_text": True}


def _looks_like_a_path(name: str) -> bool:
    return (any(c in name for c in "/\\") or name.startswith(("~", "."))
            or name.endswith((".json", ".keras", ".h5")))


def _warn_unmatched(trained: dict, sources) -> None:
    """A source named as text (``--trained-on m=dfdc``) that matches no tested source is most
    likely a typo, or a run folder's name: every source then reads as cross-source."""
    if not sources:  # no table says its source: per_source_table warns of that instead
        return
    for name, t in trained.items():
        stray = [n for n in (t["fake_sources"] if t.get("as_text") else [])
                 if not any(source_matches(s, [n]) for s in sources)]
        if stray:
            log.warning("trained-on for %s: %s match(es) no tested source %s; a typo, or a run "
                        "folder that is not there? (every source counts as cross-source for it)",
                        name, stray, sorted(sources))


def auc_ci(y, p, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """ROC-AUC of ``(y, p)`` (one row per video) and its percentile bootstrap interval
    resampling videos: ``(auc, low, high)``, None where undefined (one class)."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    return _bootstrap(lambda i: _auc(y[i], p[i]), len(y), n_boot, seed, level)


def _bootstrap(stat, n: int, n_boot: int, seed: int, level: float):
    """``stat(index array)`` on all ``n`` videos and its percentile bootstrap interval over
    resamples of videos: ``(value, low, high)``; None where ``stat`` is (one class)."""
    value = stat(np.arange(n))
    if value is None or not n_boot:
        return value, None, None
    rng = np.random.default_rng(seed)
    draws = [d for d in (stat(rng.integers(0, n, n)) for _ in range(int(n_boot)))
             if d is not None]
    if not draws:
        return value, None, None
    lo, hi = np.percentile(draws, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return value, float(lo), float(hi)


def _ci_text(lo, hi) -> str:
    return f"[{lo:.3f}, {hi:.3f}]" if lo is not None else ""


def per_source_table(tests: dict, trained: dict | None = None, bootstrap: int = 1000,
                     seed: int = 0, missing: str = "exclude") -> pd.DataFrame:
    """ROC-AUC per model and per source (the video tables' ``source`` column, which ``dfd
    predict`` writes from the shards), each with its bootstrap interval, and whether the
    model saw that source's fakes in training (``trained[name]``, see :func:`trained_on`):
    in-source, else cross-source; unknown when nothing says what it trained on."""
    trained = trained or {}
    unknown = sorted(set(trained) - set(tests))
    if unknown:
        raise ValueError(f"trained-on given for {unknown}, which match no model; models are "
                         f"{sorted(tests)}")
    _warn_unmatched(trained, {str(s) for t in tests.values() if "source" in t.columns
                              for s in t["source"].dropna().unique()})
    rows = []
    for name, t in tests.items():
        if "source" not in t.columns:
            log.warning("%s: its table has no 'source' column (score it with dfd predict from "
                        "shards); no per-source figures", name)
            continue
        used, _ = prepare(t, missing)
        used = used.assign(source=used["source"].fillna("").astype(str))
        for source, sub in sorted(used.groupby("source"), key=lambda kv: kv[0]):
            auc, lo, hi = auc_ci(sub["label"], sub["p_fake"], bootstrap, seed)
            kind = UNKNOWN_KIND
            if name in trained:
                kind = IN_SOURCE if source_matches(source, trained[name]["fake_sources"]) \
                    else CROSS_SOURCE
            rows.append({"model": name, "source": source or "(none)", "kind": kind,
                         "roc_auc": auc, "roc_auc_95ci": _ci_text(lo, hi), "n": int(len(sub)),
                         "n_fake": int((sub["label"] == FAKE).sum())})
    return pd.DataFrame(rows, columns=PER_SOURCE_COLUMNS)


def paired_auc_difference(y, p_ref, p, n_boot: int = 1000, seed: int = 0,
                          level: float = 0.95):
    """ROC-AUC of ``p`` minus that of ``p_ref`` on the same videos, and its paired bootstrap
    interval (each resample draws videos once and scores both models on them, so what the
    two share, the videos' difficulty, cancels): ``(difference, low, high)``, None where
    undefined (one class)."""
    y, a, b = np.asarray(y, int), np.asarray(p_ref, float), np.asarray(p, float)

    def difference(i):
        ra, rb = _auc(y[i], a[i]), _auc(y[i], b[i])
        return None if ra is None or rb is None else rb - ra

    return _bootstrap(difference, len(y), n_boot, seed, level)


def paired_table(tests: dict, reference: str, bootstrap: int = 1000, seed: int = 0,
                 missing: str = "exclude") -> pd.DataFrame:
    """Every model against ``reference``, per source (all videos when the tables carry no
    ``source``), on the videos both scored: the two ROC-AUCs, their difference and its paired
    bootstrap interval (:func:`paired_auc_difference`). An interval that excludes 0 says one
    model is better on that source; two overlapping unpaired intervals do not say it isn't."""
    if reference not in tests:
        raise ValueError(f"reference {reference!r} is not one of the models {sorted(tests)}")
    ref, _ = prepare(tests[reference], missing)
    rows = []
    for name, t in tests.items():
        if name == reference:
            continue
        used, _ = prepare(t, missing)
        keep = ["video_id", "label", "p_fake"]
        source_of = ref if "source" in ref.columns else used  # one side says the source
        left = ref[keep + (["source"] if source_of is ref else [])]
        right = used[keep + (["source"] if source_of is used and "source" in used else [])]
        both = left.merge(right, on="video_id", suffixes=("_ref", ""))
        if "source" in both.columns:
            both = both.assign(source=both["source"].fillna("").astype(str))
            groups = sorted(both.groupby("source"), key=lambda kv: kv[0])
        else:
            groups = [("", both)]
        for source, sub_ in groups:
            if (sub_["label"] != sub_["label_ref"]).any():
                raise ValueError(f"{name} and {reference} disagree on the labels of "
                                 f"{int((sub_['label'] != sub_['label_ref']).sum())} video(s)")
            y = sub_["label"].to_numpy(int)
            d, lo, hi = paired_auc_difference(y, sub_["p_fake_ref"], sub_["p_fake"],
                                              bootstrap, seed)
            rows.append({"model": name, "reference": reference, "source": source or "(all)",
                         "roc_auc": _auc(y, sub_["p_fake"].to_numpy(float)),
                         "reference_roc_auc": _auc(y, sub_["p_fake_ref"].to_numpy(float)),
                         "difference": d, "difference_95ci": _ci_text(lo, hi),
                         "n": int(len(sub_))})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def generalisation_summary(per_source: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean in-source and mean cross-source ROC-AUC over its sources."""
    rows = []
    for name, sub in per_source.groupby("model", sort=False):
        row = {"model": name}
        for kind in (IN_SOURCE, CROSS_SOURCE):
            v = sub.loc[sub["kind"] == kind, "roc_auc"].dropna()
            row[f"mean_{kind.replace('-', '_')}_roc_auc"] = float(v.mean()) if len(v) else None
            row[f"{kind.replace('-', '_')}_sources"] = "+".join(
                schema.bare_source(s) for s in sub.loc[sub["kind"] == kind, "source"])
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "mean_in_source_roc_auc", "in_source_sources",
                                       "mean_cross_source_roc_auc", "cross_source_sources"])


def clip_labels(data_dir) -> pd.Series:
    """Labels of the shared labelled clips, by file name: ``dfdc_videos/metadata.json``
    (DFDC's FAKE/REAL) and ``other_videos/labels.csv`` (``file,label``); UNKNOWN left out."""
    d = Path(data_dir)
    found: dict[str, int] = {}
    meta = d / "dfdc_videos" / "metadata.json"
    if meta.is_file():
        for name, rec in json.loads(meta.read_text()).items():
            found[name] = parse_label(rec.get("label"))
    other = d / "other_videos" / "labels.csv"
    if other.is_file():
        for _, row in pd.read_csv(other, dtype=str).iterrows():
            found[str(row["file"])] = parse_label(row["label"])
    if not found:
        raise ValueError(f"no clip labels in {d} (looked for dfdc_videos/metadata.json and "
                         "other_videos/labels.csv)")
    s = pd.Series(found, dtype=int)
    return s[s != -1]


def clip_table(detect_tables: dict, labels: pd.Series, threshold: float = 0.5,
               bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Video-level figures of ``dfd detect`` tables (``{name: table}``, column ``video``
    a path or file name) on labelled clips: ROC-AUC with its bootstrap interval and the
    accuracy at ``threshold``; clips without a score (no face, error) are counted."""
    rows = []
    for name, t in detect_tables.items():
        for col in ("video", "p_fake"):
            if col not in t.columns:
                raise ValueError(f"detect table of {name!r} lacks column {col!r}; has "
                                 f"{list(t.columns)}")
        t = t.assign(file=[Path(str(v)).name for v in t["video"]])
        t = t[t["file"].isin(labels.index)]
        p = pd.to_numeric(t["p_fake"], errors="coerce")
        ok = p.notna() & (t["status"].fillna("ok").astype(str) == "ok" if "status" in t
                          else p.notna())
        y = labels.reindex(t["file"]).to_numpy(int)
        yy, pp = y[ok.to_numpy()], p[ok].to_numpy(float)
        auc, lo, hi = auc_ci(yy, pp, bootstrap, seed)
        rows.append({"model": name, "roc_auc": auc, "roc_auc_95ci": _ci_text(lo, hi),
                     "accuracy": float(((pp >= threshold) == (yy == FAKE)).mean()) if len(yy) else None,
                     "n": int(len(yy)), "n_fake": int((yy == FAKE).sum()),
                     "n_unscored": int((~ok).sum() + len(set(labels.index) - set(t["file"])))})
    return pd.DataFrame(rows, columns=CLIP_COLUMNS)


def generalisation(tests: dict, trained: dict | None = None, clips: dict | None = None,
                   clip_data=None, threshold: float = 0.5, bootstrap: int = 1000,
                   seed: int = 0, missing: str = "exclude", reference: str | None = None) -> dict:
    """The per-source table, its in/cross summary, (with ``clips``: ``{name: detect
    table path}`` and ``clip_data``: the shared data folder) the labelled-clip table, and
    (with ``reference``, a model's name) every model against it (:func:`paired_table`)."""
    per = per_source_table(tests, trained, bootstrap, seed, missing)
    out = {"per_source": per, "summary": generalisation_summary(per)}
    if reference is not None:
        out["paired"] = paired_table(tests, reference, bootstrap, seed, missing)
    if clips:
        if clip_data is None:
            raise ValueError("clip tables need the labelled clips' folder (--clip-labels DIR)")
        tables = {n: read_detect_table(p) for n, p in clips.items()}
        out["clips"] = clip_table(tables, clip_labels(clip_data), threshold, bootstrap, seed)
    return out


def read_detect_table(path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"detect table not found: {p}")
    return pd.read_csv(p, dtype={"video": str, "status": str})
