// dfd-tf upload page: POST the file to /v1/detect and draw the verdict, an SVG
// per-frame score plot and the face thumbnails. No external scripts.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const TRACK_COLORS = ["#2457c5", "#e07b00", "#7b3fb5", "#0f8f83", "#b8327a"];

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function fmt(p) {
  return (p === null || p === undefined) ? "n/a" : p.toFixed(3);
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

function drawPlot(res) {
  const box = $("plot");
  box.replaceChildren();
  const frames = res.frames || [];
  if (!frames.length) {
    box.append(Object.assign(document.createElement("p"),
      { className: "empty", textContent: "No face scores to plot." }));
    return;
  }
  const W = 760, H = 260, L = 48, R = 130, T = 12, B = 36;
  const pw = W - L - R, ph = H - T - B;
  const xs = frames.map((f) => f.frame_index);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  const X = (v) => L + ((v - x0) / (x1 - x0)) * pw;
  const Y = (p) => T + (1 - p) * ph;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "P(fake) per sampled frame", id: "score-plot" });
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(svgEl("line", { x1: L, x2: L + pw, y1: Y(p), y2: Y(p), class: "grid" }));
    svg.append(svgEl("text", { x: L - 8, y: Y(p) + 4, "text-anchor": "end" }, p.toFixed(2)));
  }
  svg.append(svgEl("line", { x1: L, x2: L, y1: T, y2: T + ph, class: "axis" }));
  svg.append(svgEl("line", { x1: L, x2: L + pw, y1: T + ph, y2: T + ph, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const v = x0 + ((x1 - x0) * i) / 4;
    svg.append(svgEl("text", { x: X(v), y: T + ph + 16, "text-anchor": "middle" },
      String(Math.round(v))));
  }
  svg.append(svgEl("text", { x: L + pw / 2, y: H - 4, "text-anchor": "middle" }, "frame"));
  svg.append(svgEl("text", { x: 12, y: T + ph / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${T + ph / 2})` }, "P(fake)"));

  const legend = [];
  svg.append(svgEl("line", { x1: L, x2: L + pw, y1: Y(res.threshold), y2: Y(res.threshold),
    class: "thr" }));
  legend.push(["thr", `threshold ${res.threshold}`]);
  if (res.p_fake !== null && res.p_fake !== undefined) {
    svg.append(svgEl("line", { x1: L, x2: L + pw, y1: Y(res.p_fake), y2: Y(res.p_fake),
      class: "vid" }));
    legend.push(["vid", `video ${fmt(res.p_fake)}`]);
  }
  const tracks = [...new Set(frames.map((f) => f.track))].sort((a, b) => a - b);
  tracks.forEach((t, i) => {
    const color = TRACK_COLORS[i % TRACK_COLORS.length];
    const pts = frames.filter((f) => f.track === t).sort((a, b) => a.frame_index - b.frame_index);
    svg.append(svgEl("polyline", { fill: "none", stroke: color, "stroke-width": 2,
      points: pts.map((f) => `${X(f.frame_index)},${Y(f.p_fake)}`).join(" ") }));
    for (const f of pts) {
      const c = svgEl("circle", { cx: X(f.frame_index), cy: Y(f.p_fake), r: 3.2, fill: color });
      c.append(svgEl("title", {}, `frame ${f.frame_index}: P(fake) ${fmt(f.p_fake)}`));
      svg.append(c);
    }
    legend.push([color, tracks.length > 1 ? `person ${t}` : "face score"]);
  });
  const lg = svgEl("g", { class: "legend" });
  legend.forEach(([kind, label], i) => {
    const y = T + 10 + i * 18, x = L + pw + 14;
    const line = svgEl("line", { x1: x, x2: x + 22, y1: y, y2: y, "stroke-width": 2 });
    if (kind === "thr" || kind === "vid") line.setAttribute("class", kind);
    else line.setAttribute("stroke", kind);
    lg.append(line, svgEl("text", { x: x + 28, y: y + 4 }, label));
  });
  svg.append(lg);
  box.append(svg);
}

function drawThumbs(res) {
  const box = $("thumbs");
  box.replaceChildren();
  const thumbs = res.thumbnails || [];
  if (!thumbs.length) {
    box.append(Object.assign(document.createElement("p"),
      { className: "empty", textContent: "No faces found." }));
    return;
  }
  const heat = $("show-heat").checked;
  const anyOverlay = thumbs.some((t) => t.overlay_jpeg_base64);
  $("heat-toggle").classList.toggle("hidden", !anyOverlay);
  for (const t of thumbs) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    const over = heat && t.overlay_jpeg_base64;
    img.src = "data:image/jpeg;base64," + (over ? t.overlay_jpeg_base64 : t.jpeg_base64);
    img.alt = over ? `face with heat map, frame ${t.frame_index}` : `face, frame ${t.frame_index}`;
    if (over) img.dataset.overlay = "1";
    img.className = t.label;  // FAKE / REAL / UNCERTAIN: the video's rule applied to this face
    const cap = document.createElement("figcaption");
    cap.textContent = `frame ${t.frame_index} · ${fmt(t.p_fake)}`;
    fig.append(img, cap);
    box.append(fig);
  }
}

let lastResult = null;

function showResult(res) {
  lastResult = res;
  const v = $("verdict");
  v.className = "verdict " + res.label;
  v.replaceChildren(
    Object.assign(document.createElement("span"), { className: "word", id: "verdict-word",
      textContent: res.label }),
    Object.assign(document.createElement("span"), { className: "score",
      textContent: res.p_fake === null ? res.error : `P(fake) = ${fmt(res.p_fake)}` }));
  const note = res.p_fake === null || res.p_fake === undefined
    ? "No score: the video could not be checked (see the message above)."
    : res.label === "UNCERTAIN"
      ? `The model's P(fake) ${fmt(res.p_fake)} lies in its uncertain band: on videos from `
        + "sources it never trained on, verdicts in this range were right too seldom (below "
        + "the precision its band was chosen for, see its model card). No verdict."
      : `The model's P(fake) ${fmt(res.p_fake)} is ${res.p_fake >= res.threshold ? "at or above" : "below"}`
        + ` the threshold ${res.threshold}. This is a model estimate, not proof.`;
  $("verdict-note").textContent = note;
  const facts = [
    ["Video", res.video],
    ["Threshold", `${res.threshold} (FAKE when P(fake) ≥ threshold)`],
    ["Faces scored", `${res.n_faces} in ${res.n_frames} frames`],
    ["Face size", res.face_px ? `${Math.round(res.face_px)} px` : "n/a"],
    ["Sharpness", res.sharpness !== null && res.sharpness !== undefined ? fmt(res.sharpness) : "n/a"],
    ["Compression", res.bpp ? `${res.bpp.toFixed(3)} bits/pixel` : "n/a"],
    ["Quality notes", res.quality_warnings || "none"],
    ["Model", `${res.model} · ${res.aggregation} per person, most suspicious person`],
    ["Time", res.timings ? `${res.timings.total.toFixed(2)} s` : "n/a"],
  ];
  const dl = $("facts");
  dl.replaceChildren();
  for (const [k, val] of facts) {
    dl.append(Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: val }));
  }
  drawPlot(res);
  drawThumbs(res);
  $("result").classList.remove("hidden");
}

async function submit(ev) {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file);
  $("submit").disabled = true;
  setStatus(`Uploading and checking ${file.name} …`);
  try {
    const r = await fetch("/v1/detect?faces=8&explain=true", { method: "POST", body });
    const res = await r.json().catch(() => ({ detail: `server answered ${r.status}` }));
    if (res.label) {
      showResult(res);
      setStatus(r.ok ? "Done." : `Could not score this video: ${res.error}`, !r.ok);
    } else {
      $("result").classList.add("hidden");
      setStatus(`Error ${r.status}: ${res.detail || "request failed"}`, true);
    }
  } catch (e) {
    setStatus("The request failed: " + e.message, true);
  } finally {
    $("submit").disabled = false;
  }
}

function init() {
  $("file").addEventListener("change", () => {
    const f = $("file").files[0];
    $("submit").disabled = !f;
    $("drop-text").textContent = f ? f.name : "Choose a video file or drop it here";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      $("file").files = e.dataTransfer.files;
      $("file").dispatchEvent(new Event("change"));
    }
  });
  $("upload-form").addEventListener("submit", submit);
  $("show-heat").addEventListener("change", () => { if (lastResult) drawThumbs(lastResult); });
  fetch("/healthz").then((r) => r.json()).then((h) => {
    if (h.model) $("model-info").textContent = `Model: ${h.model}, limit ${h.max_upload_mb} MB.`;
  }).catch(() => {});
}

init();
