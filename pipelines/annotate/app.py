"""The annotation page over HTTP (Starlette): server-rendered pages, a small JSON API, ranged mp4s.

    GET  /                      who is annotating (a name, kept in a cookie), modes, progress, agreement
    POST /login                 form field ``annotator``
    GET  /annotate/{mode}       the next clip for this annotator: best | correct | acceptable
    GET  /clips/{clip_id}.mp4   the clip, straight out of its shard; HTTP range requests (206) for seeking
    GET  /api/next/{mode}       the next clip as JSON (what the page shows)
    POST /api/submit            {assignment, shown, choice, acceptable?, corrected?, seconds?, submission_id?}
    POST /api/skip              {assignment}
    POST /api/undo              {}: the annotator's newest submission is taken back and served again
    GET  /api/progress          clips, done per mode, counts per annotator, agreement per pair

The API names the annotator by the page's cookie or an ``X-Annotator`` header. A refused request
gets a 4xx status and ``{"error": message}``; nothing is stored. With a token (required when the
server listens beyond localhost) every request must carry it: ``?token=`` once (then a cookie),
or ``Authorization: Bearer TOKEN``. Every submission rewrites the labels parquet in the
background, at most every 2 s (a burst of submissions is one rewrite); stopping the server rewrites it
once more.
"""
from __future__ import annotations

import os
import re
import secrets
import threading
import time
from contextlib import asynccontextmanager

import fsspec
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from vidcurate.pipelines.labels.agreement import agreement
from vidcurate.pipelines.annotate.catalog import CatalogError
from vidcurate.pipelines.annotate.studio import Refused, Studio, check_mode

HERE = os.path.dirname(__file__)
NAME = re.compile(r"^[\w][\w .@-]{0,63}$")
ANNOTATOR_COOKIE, TOKEN_COOKIE = "vidcurate_annotator", "vidcurate_token"
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1 << 16
INSTRUCTIONS = {
    "best": "Watch the clip. Choose the caption that describes it most faithfully and in most detail, "
            "as if you described it to a friend on the phone. If none is right, choose All bad.",
    "correct": "Watch the clip. Correct the caption until it is true to the clip: fix what is wrong, add what "
               "is missing, remove what you cannot see or hear. Start from another candidate with its number.",
    "acceptable": "Watch the clip. Mark every caption that is acceptable (true to the clip), then the best of them.",
}


class Exporter:
    """Rewrites the labels parquet in a background thread whenever the store changed, at most once
    every ``interval`` seconds: a rewrite costs time that grows with the labels (about 0.1 s at
    2,500), so a burst of submissions becomes one rewrite rather than a queue of them."""

    def __init__(self, store, interval: float = 2.0):
        self.store, self.changed, self.stopping, self.interval = store, threading.Event(), False, interval
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="labels-export", daemon=True)

    def start(self) -> None:
        self.store.export()
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            self.changed.wait()
            self.changed.clear()
            started = time.monotonic()
            try:
                self.store.export()
                self.error = None
            except Exception as exc:  # the store keeps every label; the page shows why the file lags
                self.error = f"could not rewrite {self.store.labels_path}: {exc}"
            if not self.stopping:
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopping = True
        self.changed.set()
        self.thread.join(timeout=30)
        self.store.export()


def create_app(studio: Studio, token: str | None = None) -> Starlette:
    # Autoescaping for every template (select_autoescape, Starlette's default, skips .j2 files).
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                                                       autoescape=True))
    exporter = Exporter(studio.store)

    def annotator_of(request: Request) -> str | None:
        name = request.headers.get("x-annotator") or request.cookies.get(ANNOTATOR_COOKIE)
        return name if name and NAME.match(name) else None

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def body(request: Request) -> dict:
        try:
            found = await request.json()
        except ValueError:
            raise Refused(400, "the request body must be a JSON object") from None
        if not isinstance(found, dict):
            raise Refused(400, f"the request body must be a JSON object, got {type(found).__name__}")
        return found

    def who(request: Request) -> str:
        name = annotator_of(request)
        if name is None:
            raise Refused(401, "no annotator: open / and give your name (API: an X-Annotator header, letters, "
                               "digits, space . @ - _, at most 64)")
        return name

    def overview() -> dict:
        """Progress, agreement on best-caption picks and the labels file: the start page and /api/progress."""
        return {**studio.progress(), "agreement": agreement(studio.store.judgments("best")),
                "labels": studio.store.labels_path, "export_error": exporter.error}

    async def start(request: Request):
        found = await run_in_threadpool(overview)
        return templates.TemplateResponse(request, "start.html.j2", {
            "annotator": annotator_of(request), "progress": found, "agreement": found["agreement"],
            "modes": list(INSTRUCTIONS), "export_error": found["export_error"], "labels": found["labels"]})

    async def login(request: Request):
        form = await request.form()
        name = str(form.get("annotator") or "").strip()
        if not NAME.match(name):
            return Response(f"not a usable annotator name: {name!r} (letters, digits, space . @ - _; at most 64)",
                            status_code=422, media_type="text/plain")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(ANNOTATOR_COOKIE, name, httponly=True, samesite="strict")
        return response

    async def page(request: Request):
        mode = request.path_params["mode"]
        name = annotator_of(request)
        if name is None:
            return RedirectResponse("/", status_code=303)
        check_mode(mode)
        held = await run_in_threadpool(studio.next_clip, name, mode)
        progress = await run_in_threadpool(studio.progress)
        return templates.TemplateResponse(request, "annotate.html.j2", {
            "annotator": name, "mode": mode, "held": public(held) if held else None, "progress": progress, "modes": list(INSTRUCTIONS),
            "instruction": INSTRUCTIONS[mode]})

    async def next_json(request: Request):
        mode = request.path_params["mode"]
        check_mode(mode)
        held = await run_in_threadpool(studio.next_clip, who(request), mode)
        if held is None:
            return JSONResponse({"done": True, "mode": mode})
        return JSONResponse({**public(held), "video": f"/clips/{held['clip_id']}.mp4"})

    async def submit(request: Request):
        name, answer = who(request), await body(request)
        stored = await run_in_threadpool(studio.submit, name, answer)
        exporter.changed.set()
        return JSONResponse(stored)

    async def skip(request: Request):
        name, answer = who(request), await body(request)
        return JSONResponse(await run_in_threadpool(studio.skip, name, answer.get("assignment")))

    async def undo(request: Request):
        name = who(request)
        undone = await run_in_threadpool(studio.undo, name)
        exporter.changed.set()
        return JSONResponse(undone)

    async def progress(request: Request):
        return JSONResponse(await run_in_threadpool(overview))

    async def clip_mp4(request: Request):
        try:
            path, offset, size = await run_in_threadpool(studio.catalog.mp4_file, request.path_params["clip_id"])
        except CatalogError as exc:
            raise Refused(404, str(exc)) from None
        return ranged(request, path, offset, size)

    @asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(exporter.start)
        yield
        await run_in_threadpool(exporter.stop)

    async def refused(request: Request, exc: Refused):
        if request.url.path.startswith("/api/") or request.url.path.startswith("/clips/"):
            return error(exc.status, str(exc))
        return Response(str(exc), status_code=exc.status, media_type="text/plain")

    app = Starlette(routes=[
        Route("/", start), Route("/login", login, methods=["POST"]),
        Route("/annotate/{mode}", page), Route("/clips/{clip_id}.mp4", clip_mp4),
        Route("/api/next/{mode}", next_json), Route("/api/submit", submit, methods=["POST"]),
        Route("/api/skip", skip, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
        Route("/api/progress", progress),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ], lifespan=lifespan, exception_handlers={Refused: refused})
    if token:
        app.add_middleware(TokenGate, token=token)
    app.state.exporter = exporter
    return app


def public(held: dict) -> dict:
    """What the page and the API may see of an assignment: never the teachers (blind to the source)."""
    return {k: held[k] for k in ("assignment", "clip_id", "mode", "shown", "candidates", "caption", "prefill", "fps")}


class TokenGate:
    """Every request carries the token: ``?token=`` (answered with a cookie), the cookie, or a Bearer header."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or \
            request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not secrets.compare_digest(given.encode(), self.token.encode()):
            response = JSONResponse({"error": "this server needs its token: open the URL it printed "
                                              "(…?token=…) or send Authorization: Bearer TOKEN"}, status_code=401)
            return await response(scope, receive, send)
        if request.query_params.get("token"):
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
                await send(message)
            return await self.app(scope, receive, send_with_cookie)
        return await self.app(scope, receive, send)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a ``Range: bytes=...`` header within ``size`` bytes; None = the whole file.

    Several ranges in one header are answered with the whole file (RFC 9110 allows it)."""
    if not header or "," in header:
        return None
    found = RANGE.match(header.strip())
    if not found or found.groups() == ("", ""):
        raise Refused(416, f"unsupported Range header {header!r} (expected bytes=FIRST-[LAST] or bytes=-SUFFIX)")
    first, last = found.groups()
    if first == "":
        length = int(last)
        if length == 0:
            raise Refused(416, f"Range {header!r} asks for no bytes")
        return max(size - length, 0), size - 1
    first = int(first)
    last = min(int(last), size - 1) if last else size - 1
    if first >= size or last < first:
        raise Refused(416, f"Range {header!r} is outside the clip's {size} bytes")
    return first, last


def ranged(request: Request, path: str, offset: int, size: int) -> Response:
    """The bytes ``offset .. offset+size`` of ``path`` as an mp4, honouring a Range header (206)."""
    try:
        span = byte_range(request.headers.get("range"), size)
    except Refused as exc:
        return Response(str(exc), status_code=416, headers={"content-range": f"bytes */{size}"},
                        media_type="text/plain")
    first, last = span if span else (0, size - 1)

    def chunks():
        with fsspec.open(path, "rb") as handle:
            handle.seek(offset + first)
            left = last - first + 1
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                yield data

    headers = {"accept-ranges": "bytes", "content-length": str(last - first + 1), "cache-control": "private, max-age=3600"}
    if span:
        headers["content-range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(chunks(), status_code=206 if span else 200, headers=headers, media_type="video/mp4")
