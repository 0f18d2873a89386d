"""One report directory: ``metrics.json``, ``scores.csv``, the PNG figures and ``index.html``.

``index.html`` is self-contained: the PNGs are embedded as base64 data URIs and the tables
written as HTML, so the single file can be mailed or attached to an issue.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dfd.evaluation import figures, plots
from dfd.evaluation.metrics import SCORE_METRICS, THRESHOLD_METRICS
from dfd.labels import FAKE, label_name

log = logging.getLogger(__name__)

METRICS_FILE, SCORES_FILE, HTML_FILE = "metrics.json", "scores.csv", "index.html"
MAX_HTML_ROWS = 500
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:0.5em 0 1em}.note{color:#666;font-size:90%}"""


_FIGURE_TITLES = {"roc": "ROC curves", "pr": "Precision-recall curves",
                  "confusion": "Confusion matrix", "hist": "Score histograms by class",
                  "timeline": "Per-frame score timeline"}


def render_figures(out_dir, curves: dict, main: str, metrics: dict, frames: pd.DataFrame | None = None,
                   videos: pd.DataFrame | None = None, n_timelines: int = 2) -> dict[str, Path]:
    """Draw the standard figures for the model ``main`` (and ROC/PR of every entry of ``curves``).

    ``curves`` maps names to ``(labels, scores)``; ``metrics`` is the :func:`evaluate` result
    of ``main``. With ``frames`` and ``videos``, the ``n_timelines`` most confidently wrong
    videos (or the highest scored when none is wrong) get a per-frame timeline.
    """
    out = Path(out_dir)
    thr = metrics["threshold"]["value"]
    figs = {"roc": plots.plot_roc(curves, out / "roc.png"),
            "pr": plots.plot_pr(curves, out / "pr.png")}
    cm = metrics["video"].get("confusion_matrix")
    if cm is not None:
        figs["confusion"] = plots.plot_confusion(cm, out / "confusion.png", thr,
                                                 f"Confusion matrix: {main}")
    y, p = curves[main]
    if len(y):
        figs["hist"] = plots.plot_hist(y, p, out / "hist.png", thr, f"Video scores by class: {main}")
    if frames is not None and videos is not None and n_timelines and len(videos):
        v = videos.dropna(subset=["p_fake"])
        wrong = v[(v["p_fake"] >= thr) != (v["label"] == FAKE)]
        pick = wrong.assign(err=(wrong["p_fake"] - thr).abs()).nlargest(n_timelines, "err") \
            if len(wrong) else v.nlargest(n_timelines, "p_fake")
        fvid = frames["video_id"].astype(str)
        for i, row in enumerate(pick.itertuples()):
            f = frames[fvid == str(row.video_id)]
            if f.empty:
                continue
            figs[f"timeline_{i}"] = figures.plot_timeline(
                f["frame_index"], f["p_fake"], out / f"timeline_{i}.png", thr, str(row.video_id),
                label_name(int(row.label)), row.p_fake, f["track"] if "track" in f else None)
    return figs


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "\u2014"
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def metrics_table(level: dict) -> pd.DataFrame:
    """Rows: metric, value, 95% CI, and why a value is undefined."""
    ci = level.get("ci", {})
    rows = []
    for k in THRESHOLD_METRICS + SCORE_METRICS:
        c = ci.get(k, {})
        rows.append({"metric": k, "value": level.get(k),
                     "95% CI": (f"[{c['low']:.4f}, {c['high']:.4f}]" if c.get("low") is not None else ""),
                     "note": level.get("undefined", {}).get(k, "")})
    rows.append({"metric": "n", "value": level.get("n"), "95% CI": "", "note": ""})
    return pd.DataFrame(rows)


def _table_html(df: pd.DataFrame, max_rows: int = MAX_HTML_ROWS) -> str:
    note = ""
    if len(df) > max_rows:
        note = f'<p class="note">first {max_rows} of {len(df)} rows; all in {SCORES_FILE}</p>'
        df = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>{note}"


def _img_html(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(out_dir, metrics: dict, scores: pd.DataFrame, figures: dict[str, Path] | None = None,
                 tables: dict[str, pd.DataFrame] | None = None, title: str = "Evaluation report") -> Path:
    """Write metrics.json, scores.csv and index.html (figures embedded) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, allow_nan=False))
    scores.to_csv(out / SCORES_FILE, index=False)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for name, df in (tables or {}).items():
        parts.append(f"<h2>{html.escape(name)}</h2>{_table_html(df)}")
    if "threshold" in metrics:
        t = metrics["threshold"]
        parts.append(f"<p>Decision threshold <b>{t['value']:.4g}</b>, policy <b>{html.escape(t['policy'])}</b>"
                     + (f", chosen on {t['n_val']} validation videos" if t.get("chosen_on") else "")
                     + ". FAKE when P(fake) &ge; threshold.</p>")
    for level in ("video", "frame"):
        if level in metrics:
            parts.append(f"<h2>{level.capitalize()}-level metrics</h2>{_table_html(metrics_table(metrics[level]))}")
    if "counts" in metrics:
        c = pd.DataFrame([metrics["counts"]]).T.reset_index()
        c.columns = ["count", "value"]
        parts.append(f"<h2>Videos used and left out</h2>{_table_html(c)}")
    for name, path in (figures or {}).items():
        heading = _FIGURE_TITLES.get(name.split("_")[0], name)
        parts.append(f"<h3>{html.escape(heading)}</h3>{_img_html(path, name)}")
    parts.append(f"<h2>Scores</h2>{_table_html(scores)}</body></html>")
    page = out / HTML_FILE
    page.write_text("\n".join(parts), encoding="utf-8")
    log.info("report written to %s", page)
    return out


def read_metrics(out_dir) -> dict:
    """The metrics.json of a report directory."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {METRICS_FILE} in report directory {out_dir}")
    return json.loads(path.read_text())
