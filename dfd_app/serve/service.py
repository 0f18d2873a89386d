"""The detection HTTP service (FastAPI): ``POST /v1/detect``, ``GET /healthz``, ``GET /`` page.

``create_app(ctx_or_settings)`` takes a ready :class:`dfd_app.detect.pipeline.DetectContext`
(tests inject fakes) or :class:`ServiceSettings` (the model and face detector are then loaded
once, at start-up, in the lifespan). Each upload is streamed into a private ``mkdtemp``
folder (0700, always removed), sniffed, and scored by :func:`dfd_app.detect.pipeline.detect_video`
in a bounded thread pool (``workers`` at once, ``max_queue`` waiting, then 503) under a
per-request time limit (504). Error bodies are ``{"detail": "..."}`` without paths or
tracebacks.

``GET /docs`` is the OpenAPI page, served without a network: Swagger UI from the
``swagger-ui-bundle`` package (the ``serve`` extra) when it is installed, else a plain page
with the ``curl`` line and a link to ``/openapi.json``. The multipart body of
``/v1/detect`` is declared in the schema (the handler reads the stream itself).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from dfd.config import json_safe
from dfd_app.detect import pipeline
from dfd_app.serve.uploads import PrivateDir, UploadError, receive_upload

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
try:  # Swagger UI's files in a pip package: /docs then works on a closed network
    from swagger_ui_bundle import swagger_ui_path as _SWAGGER_UI
except ImportError:  # pragma: no cover - the serve extra installs it
    _SWAGGER_UI = None
SWAGGER_UI_DIR = Path(_SWAGGER_UI) if _SWAGGER_UI else None
SAFE_ERRORS = {
    "no_face": "no face found in the sampled frames",
    "unreadable": "could not decode the video (corrupt file or unsupported codec)",
    "internal": "internal error while scoring the video",
}


@dataclass
class ServiceSettings:
    """What ``dfd serve`` loads and the limits it enforces."""

    model: str | None = None
    stacker: str | None = None
    stack_models: list[str] | None = None
    detector: str = "default"
    n_frames: int = pipeline.DEFAULT_N_FRAMES
    sampler: str = pipeline.DEFAULT_SAMPLER
    margin: float | str = "auto"  # face crop framing (pipeline.build_context)
    all_faces: bool = False  # every person as a track (default: largest face per frame)
    threshold: float = pipeline.DEFAULT_THRESHOLD
    aggregation: str = pipeline.DEFAULT_AGGREGATION
    max_upload_mb: float = 200.0
    timeout_s: float = 120.0
    workers: int = 2
    max_queue: int = 8
    max_thumbnails: int = 16
    thumb_size: int = 96
    tmp_root: str | None = None  # where private upload folders are made (default: system temp)
    #: refuse a video with more decoded pixels (width x height x frames) than this, before
    #: decoding it (None: no cap); frames are reduced as they are decoded in any case
    max_decoded_mpix: float | None = 20_000.0
    #: what runs a frame model (dfd.inference.lite.RUNTIMES)
    runtime: str = "auto"

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def build_context(self) -> pipeline.DetectContext:
        return pipeline.build_context(
            model=self.model, stacker=self.stacker, stack_models=self.stack_models,
            detector=self.detector, n_frames=self.n_frames, sampler=self.sampler,
            margin=self.margin, all_faces=self.all_faces, threshold=self.threshold,
            aggregation=self.aggregation,
            max_decoded_pixels=None if not self.max_decoded_mpix
            else int(self.max_decoded_mpix * 1e6), runtime=self.runtime)


#: the multipart body of POST /v1/detect, for the OpenAPI schema (read by hand, not by FastAPI)
DETECT_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "the video (MP4/MOV, Matroska/WebM, AVI, MPEG, "
                                               "FLV, ASF or Ogg)"}},
    }}},
}
DETECT_RESPONSES = {
    400: {"description": "not multipart, no field 'file', a file in another field, an empty file"},
    408: {"description": "the upload took longer than the time limit"},
    413: {"description": "larger than the upload limit"},
    415: {"description": "not a video (by its first bytes)"},
    422: {"description": "a video that cannot be decoded (unknown codec, damaged); body: the "
                         "result with status=error"},
    500: {"description": "an internal error while scoring"},
    503: {"description": "too many requests in progress, or the model is still loading"},
    504: {"description": "scoring took longer than the time limit"},
}

DOCS_FALLBACK = """<!doctype html><html><head><meta charset="utf-8">
<title>dfd-tf detection API</title></head><body>
<h1>dfd-tf detection API</h1>
<p>The interactive page needs the <code>swagger-ui-bundle</code> package
(<code>pip install 'dfd-tf[serve]'</code>); it is not installed, and this service loads
nothing from the network.</p>
<pre>curl -F file=@clip.mp4 'http://HOST:PORT/v1/detect?plot=1&amp;faces=8'</pre>
<p>The schema: <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


def _safe_record(rec: dict, name: str) -> tuple[int, dict]:
    """HTTP status and a client-safe copy of a result (fixed error texts, display name)."""
    rec = dict(rec, video=name)
    if rec["status"] == "no_face":
        rec["error"] = SAFE_ERRORS["no_face"]
        return 200, rec
    if rec["status"] == "error":
        unreadable = str(rec.get("error", "")).startswith("VideoReadError")
        rec["error"] = SAFE_ERRORS["unreadable" if unreadable else "internal"]
        return (422 if unreadable else 500), rec
    return 200, rec


def create_app(ctx_or_settings=None, settings: ServiceSettings | None = None):
    """The FastAPI app. ``ctx_or_settings``: a DetectContext (used as is) or ServiceSettings.

    With a context, ``settings`` gives the limits (defaults otherwise).
    """
    if isinstance(ctx_or_settings, pipeline.DetectContext):
        given_ctx, cfg = ctx_or_settings, settings or ServiceSettings()
    else:
        given_ctx, cfg = None, ctx_or_settings or settings or ServiceSettings()
    state: dict = {"ctx": given_ctx, "pool": None, "busy": 0}

    @asynccontextmanager
    async def lifespan(app):
        if state["ctx"] is None:
            log.info("loading the model and the face detector")
            state["ctx"] = await asyncio.to_thread(cfg.build_context)
        try:
            await asyncio.to_thread(pipeline.warm_up, state["ctx"])
        except Exception as err:  # noqa: BLE001 - the first request will show the real error
            log.warning("model warm-up failed: %s", err)
        state["pool"] = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, cfg.workers), thread_name_prefix="dfd-detect")
        log.info("ready: model %s, threshold %s, %d worker(s)", state["ctx"].model_name,
                 state["ctx"].threshold, cfg.workers)
        try:
            yield
        finally:
            state["pool"].shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="dfd-tf deepfake detection", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = cfg
    app.state.service = state
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if SWAGGER_UI_DIR is not None:
        app.mount("/docs-assets", StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")
        if SWAGGER_UI_DIR.name.startswith("swagger-ui-4."):  # renders OpenAPI 3.0, not 3.1
            app.openapi_version = "3.0.3"

    @app.get("/docs", include_in_schema=False)
    async def docs():
        if SWAGGER_UI_DIR is None:
            return HTMLResponse(DOCS_FALLBACK)
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/healthz")
    async def healthz():
        ctx = state["ctx"]
        return {"status": "ok" if ctx is not None else "starting",
                "model": ctx.model_name if ctx else None,
                "runtime": ctx.runtime if ctx else None,
                "threshold": ctx.threshold if ctx else None,
                "aggregation": ctx.aggregation if ctx else None,
                "max_upload_mb": cfg.max_upload_mb, "timeout_s": cfg.timeout_s,
                "busy": state["busy"]}

    @app.post("/v1/detect", openapi_extra={"requestBody": DETECT_BODY},
              responses=DETECT_RESPONSES)
    async def detect(request: Request, plot: bool = Query(False, description="inline PNG timeline"),
                     faces: int = Query(0, ge=0, description="number of face thumbnails"),
                     explain: bool = Query(False, description="Grad-CAM: 'attention' per face "
                                           "and a heat-map overlay on each thumbnail")):
        ctx = state["ctx"]
        if ctx is None:
            raise HTTPException(503, "the model is still loading")
        if state["busy"] >= cfg.workers + cfg.max_queue:
            raise HTTPException(503, "too many requests in progress; retry later")
        deadline = time.monotonic() + cfg.timeout_s
        state["busy"] += 1
        tmp = PrivateDir(cfg.tmp_root)
        try:
            try:
                path, name, _ = await asyncio.wait_for(
                    receive_upload(request, tmp.path, cfg.max_bytes), cfg.timeout_s)
            except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
                raise HTTPException(408, "the upload took longer than the time limit") from None
            except UploadError as err:
                raise HTTPException(err.status, err.message) from None
            # faces are scored while the video decodes only when no other upload is in
            # flight: beside other uploads it costs CPU they need (measured: p50 +2-8%)
            rctx = dataclasses.replace(ctx, plot_png=plot, plot_dir=None, faces_dir=None,
                                       thumbnails=min(faces, cfg.max_thumbnails),
                                       thumb_size=cfg.thumb_size, details=True,
                                       explain=explain, explain_dir=None,
                                       score_while_decoding=ctx.score_while_decoding
                                       and state["busy"] <= 1)
            rec = await _run_job(state["pool"], tmp, path, rctx, deadline - time.monotonic())
            status, body = _safe_record(rec, name)
            return JSONResponse(json_safe(body), status_code=status)
        finally:
            state["busy"] -= 1
            tmp.release()

    async def _run_job(pool, tmp: PrivateDir, path: Path, rctx, remaining: float) -> dict:
        def job():
            try:
                return pipeline.detect_video(path, rctx)
            finally:
                tmp.release()

        tmp.acquire()  # the job's reference: released by the job, or here if it never runs
        fut = pool.submit(job)
        fut.add_done_callback(lambda f: tmp.release() if f.cancelled() else None)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), max(remaining, 0.001))
        except asyncio.TimeoutError:
            fut.cancel()  # a queued job never starts; a running one finishes and cleans up
            log.warning("request over the %.0f s time limit", cfg.timeout_s)
            raise HTTPException(504, f"detection took longer than the {cfg.timeout_s:g} s limit") from None

    return app
