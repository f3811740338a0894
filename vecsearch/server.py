"""``vecsearch serve``: a resident search service over one index, with a web page.

The app holds one opened ``Index`` (FAISS lists and metadata memory-mapped) and answers from it.
A watcher polls the manifest; when ``add``, ``remove`` or ``build`` commit a new version it opens
it and swaps it in, and a request in flight keeps the ``Index`` it started with. A new version
that cannot be opened is not swapped in: the old one is served and ``/healthz`` says why.

Uploads are read with a size cap (memory stays bounded) and encoded on a pool of one thread per
core (decoding, OpenCV and numpy release the GIL). Every error a client can cause is a 4xx with
``{"error": ...}`` naming the problem. Bound to a loopback address the API is open; bound to any
other, every ``/api`` call needs the token (``Authorization: Bearer …``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import static
from .executors import default_workers, one_thread_per_call
from .images import ImageError, to_pixels
from .manifest import IndexDirError, read_version
from .output import hit_fields, member_fields
from .search import Index, open_index

log = logging.getLogger("vecsearch.server")

MAX_UPLOAD = 25 << 20
MAX_K = 1000
WATCH_SECONDS = 1.0
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ClientError(Exception):
    """A request the client got wrong: its status and what to say."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Served:
    """The index being served, and the newest version that could not be opened, if any."""

    root: Path
    index: Index
    problem: str | None = None
    failed_version: int | None = None
    dedup: dict = field(default_factory=dict)  # (version, threshold, verified) → groups

    def refresh(self) -> None:
        """Open and swap in a new committed version, if there is one; keep the old on failure."""
        try:
            newest = read_version(self.root).number
        except IndexDirError as e:
            self._fail(None, str(e))
            return
        if newest == self.index.version.number:  # a damaged manifest put back, say
            if self.problem is not None:
                log.info("serving version %d, as before", newest)
            self.problem = self.failed_version = None
            return
        if newest == self.failed_version:
            return
        try:
            fresh = open_index(self.root)
        except (IndexDirError, ValueError, OSError, RuntimeError) as e:
            self._fail(newest, str(e).splitlines()[0])
            return
        self.index, self.problem, self.failed_version, self.dedup = fresh, None, None, {}
        log.info("serving version %d (%d images)", fresh.version.number, len(fresh))

    def _fail(self, version: int | None, why: str) -> None:
        if why != self.problem:
            log.warning("keeping version %d: %s", self.index.version.number, why)
        self.problem, self.failed_version = why, version


def create_app(
    index: str | os.PathLike,
    *,
    token: str | None = None,
    max_upload: int = MAX_UPLOAD,
    workers: int | None = None,
    access_log: bool = True,
) -> FastAPI:
    """The ASGI app serving the index directory ``index`` (see the module's docstring)."""
    served = Served(Path(index).expanduser(), open_index(index))
    one_thread_per_call()  # the pool is the parallelism: one search per core
    pool = ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="vecsearch-encode")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        watcher = asyncio.create_task(_watch(served))
        try:
            yield
        finally:
            watcher.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="vecsearch",
        version=_version(),
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.served = served

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        try:
            if request.url.path.startswith("/api/") and token is not None and not _authorised(request, token):
                raise ClientError(401, "this server needs its token: send 'Authorization: Bearer <token>'")
            response = await call_next(request)
        except ClientError as e:
            response = JSONResponse({"error": str(e)}, e.status)
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        if access_log:
            ms = 1000 * (time.perf_counter() - started)
            log.info(
                '%s "%s %s" %d %.1f ms',
                request.client.host if request.client else "-",
                request.method,
                request.url.path,
                response.status_code,
                ms,
            )
        return response

    @app.exception_handler(ClientError)
    async def client_error(request: Request, e: ClientError):
        return JSONResponse({"error": str(e)}, e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or "the request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(Exception)
    async def failure(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"the server failed: {type(e).__name__}: {e}"}, 500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, e.status_code)

    _routes(app, served, pool, max_upload)
    return app


def _routes(app: FastAPI, served: Served, pool: ThreadPoolExecutor, max_upload: int) -> None:
    @app.get("/", include_in_schema=False)
    async def page():
        return Response(static.read("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str):
        if name not in static.FILES:
            raise ClientError(404, f"no such file: {name}")
        return Response(static.read(name), media_type=static.FILES[name])

    @app.get("/healthz")
    async def healthz():
        """Whether the server answers, from which version, and why a newer one is not served."""
        ix = served.index
        return {
            "status": "ok" if served.problem is None else "degraded",
            "version": ix.version.number,
            "images": len(ix),
            "problem": served.problem,
        }

    @app.get("/api/info")
    async def info():
        """What ``vecsearch info`` shows."""
        return served.index.info()

    @app.post("/api/search")
    async def search(request: Request, k: int = 10, min_similarity: float = 0.0, verify: bool = False):
        """One or more images (multipart form files, or one image as the raw body) → one result list
        per image, in order: the hits with the fields of ``vecsearch query --format json``."""
        _check(k, min_similarity)
        uploads = await _uploads(request, max_upload)
        index = served.index
        loop = asyncio.get_running_loop()
        answers = await loop.run_in_executor(
            pool, lambda: index.search_each([data for _, data in uploads], k, min_similarity, verify=verify)
        )
        bad = [(name, a.error.split(": ", 1)[-1]) for (name, _), a in zip(uploads, answers) if a.error]
        if bad:
            raise ClientError(422, f"{bad[0][0]}: {bad[0][1]}")
        return {
            "version": index.version.number,
            "results": [
                {"query": name, "hits": [_api_hit(h) for h in a.hits]}
                for (name, _), a in zip(uploads, answers)
            ],
        }

    @app.post("/api/search/vector")
    async def search_vector(request: Request):
        """``{"vectors": [[...], ...], "k": 10, "min_similarity": 0}`` (vectors of this index's encoder)
        → one result list per vector."""
        body = await _body(request, max_upload)
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ClientError(400, f"the body is not valid JSON ({e})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("vectors"), list) or not raw["vectors"]:
            raise ClientError(422, 'send {"vectors": [[...], ...]}: a list of vectors')
        k, min_similarity = raw.get("k", 10), raw.get("min_similarity", 0.0)
        _check(k, min_similarity)
        index = served.index
        vectors = _vectors(raw["vectors"], index.dim)
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(pool, lambda: index.search_vectors(vectors, k, min_similarity))
        return {
            "version": index.version.number,
            "results": [{"hits": [_api_hit(h) for h in hits]} for hits in found],
        }

    @app.get("/api/images/{image_id}")
    async def image(image_id: int):
        """The indexed image ``image_id``, as its file is."""
        path = _path_of(served.index, image_id)
        return FileResponse(
            path, media_type=IMAGE_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")
        )

    @app.get("/api/images/{image_id}/thumbnail")
    async def thumbnail(image_id: int, size: int = 256):
        """The indexed image ``image_id`` as a JPEG at most ``size`` pixels on its longer side."""
        if not 16 <= size <= 1024:
            raise ClientError(422, f"size must be a whole number from 16 to 1024, not {size}")
        path = _path_of(served.index, image_id)
        loop = asyncio.get_running_loop()
        return Response(await loop.run_in_executor(pool, _jpeg, path, size), media_type="image/jpeg")

    @app.get("/api/dedup")
    async def dedup(min_similarity: float = 90.0, verify: bool = False):
        """Every group of near-duplicates at or above ``min_similarity`` %, the suggested keeper first;
        with ``verify``, each member checked against the keeper's keypoints."""
        if not 0 < min_similarity <= 100:
            raise ClientError(
                422, f"min_similarity must be a number above 0 and at most 100, not {min_similarity}"
            )
        index = served.index
        key = (index.version.number, min_similarity, verify)
        if key not in served.dedup:
            from .dedup import find_groups

            loop = asyncio.get_running_loop()
            groups = await loop.run_in_executor(
                pool, lambda: find_groups(index, min_similarity, verify=verify)
            )
            served.dedup[key] = [[member_fields(m) for m in g] for g in groups]
        return {"version": index.version.number, "groups": served.dedup[key]}


async def _watch(served: Served) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        await loop.run_in_executor(None, served.refresh)


def _authorised(request: Request, token: str) -> bool:
    import hmac

    given = request.headers.get("authorization", "")
    return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())


def _check(k, min_similarity) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ClientError(422, f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    if (
        isinstance(min_similarity, bool)
        or not isinstance(min_similarity, (int, float))
        or not 0 <= min_similarity <= 100
    ):
        raise ClientError(422, f"min_similarity must be a number from 0 to 100, not {min_similarity!r}")


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it grows past ``limit``: memory stays bounded."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ClientError(413, f"the upload is {int(length):,} bytes, over this server's limit of {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ClientError(413, f"the upload is over this server's limit of {limit:,} bytes")
    return bytes(body)


async def _uploads(request: Request, limit: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of the images of a search request: multipart files, or one raw image."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _body(request, limit)
    if kind == "multipart/form-data":
        from starlette.datastructures import UploadFile

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1000, max_fields=1000)
        except Exception as e:  # python-multipart's parse errors have no common base
            raise ClientError(400, f"the multipart body cannot be read ({e})") from None
        files = [
            (v.filename or f"upload {n + 1}", await v.read())
            for n, (_, v) in enumerate(form.multi_items())
            if isinstance(v, UploadFile)
        ]
        if not files:
            raise ClientError(422, "the form holds no file: send images as multipart form files")
        return files
    if kind.startswith("image/") or kind == "application/octet-stream":
        if not body:
            raise ClientError(422, "the upload is empty")
        return [("upload", body)]
    raise ClientError(
        415, f"send images as multipart/form-data or as one image/* body, not {kind or 'no type'}"
    )


def _vectors(raw: list, dim: int):
    import numpy as np

    try:
        vectors = np.asarray(raw, np.float32)
    except (ValueError, TypeError):
        raise ClientError(422, "vectors must be lists of numbers, all of one length") from None
    if vectors.ndim != 2 or vectors.shape[1] != dim or not np.isfinite(vectors).all():
        shape = "x".join(map(str, vectors.shape))
        raise ClientError(
            422, f"vectors must be finite and of length {dim} (this index's encoder), not {shape}"
        )
    return vectors


def _api_hit(hit) -> dict:
    """A hit as the CLI's JSON shows it, with its file's size for the page."""
    return {**hit_fields(hit), "width": hit.width, "height": hit.height, "bytes": hit.bytes}


def _path_of(index: Index, image_id: int) -> str:
    paths = index.paths([image_id]) if image_id >= 0 else {}
    if image_id not in paths:
        raise ClientError(404, f"no image {image_id} in this index")
    path = paths[image_id]
    if not os.path.isfile(path):
        raise ClientError(404, f"image {image_id}'s file is gone or unreadable")
    return path


def _jpeg(path: str, size: int) -> bytes:
    import cv2

    try:
        pixels = to_pixels(path, size)
    except ImageError as e:
        raise ClientError(404, f"the image cannot be read ({e})") from None
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vecsearch")
    except PackageNotFoundError:
        return "unknown"
