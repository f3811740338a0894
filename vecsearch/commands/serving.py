"""``vecsearch serve``: the checks made before listening (token, address, port), then uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from ..arguments import UsageError, Value
from ..sizes import parse_bytes
from .common import DEFAULT_INDEX, OK, Dir, File, say, setup_logging


def serve(
    index: Dir = DEFAULT_INDEX,
    host: Annotated[str, Value("HOST", words="an address")] = "127.0.0.1",
    port: Annotated[int, Value("PORT", low=1, high=65535)] = 8765,
    token_file: File = None,
    max_upload: Annotated[str, Value("SIZE", parse=parse_bytes, words="a size like 25M")] = "25M",
    workers: Annotated[int | None, Value("N", low=1)] = None,
    quiet: bool = False,
) -> int:
    """Serve the index over HTTP: a web page where you drop a photo, and a JSON API.

    The index stays open and moves to each new version that add, remove or build commit, without
    a restart; if a new version cannot be opened the old one is served and /healthz says why.
    Bound to a loopback address (the default) the API is open to this machine; bound to any other
    address every /api call needs a token, read from --token-file or the VECSEARCH_TOKEN
    environment variable (never from the command line, where ps would show it). Ctrl-C or SIGTERM
    stops it after the requests in flight.

    Endpoints: / (the page), POST /api/search (images as multipart files or one raw image;
    k, min_similarity, verify), POST /api/search/vector, GET /api/info, GET /api/images/ID,
    GET /api/images/ID/thumbnail, GET /api/dedup?min_similarity=90, GET /healthz, and the
    OpenAPI description at /api/docs.

    Args:
        index: the index directory
        host: the address to listen on; any other than loopback needs a token
        port: the port to listen on
        token_file: a file holding the token clients must send (Authorization: Bearer TOKEN)
        max_upload: the largest request body accepted; larger ones get 413
        workers: threads encoding uploads; one per core by default
        quiet: no access log

    Examples:
        vecsearch serve --index indexes/photos
        vecsearch serve --index indexes/photos --host 0.0.0.0 --port 8080 --token-file secret.txt
    """
    import signal

    try:
        import uvicorn

        from ..server import create_app
    except ImportError as e:
        raise UsageError(
            f"serve needs the server's packages ({e.name} is missing): pip install 'vecsearch[serve]'"
        ) from None
    max_upload = parse_bytes(max_upload)
    token = _token(token_file)
    if token is None and not _loopback(host):
        raise UsageError(
            f"--host {host} is reachable from other machines: give a token with --token-file FILE "
            "or the VECSEARCH_TOKEN environment variable"
        )
    listener = _listen(host, port)
    setup_logging(quiet=False)
    app = create_app(index, token=token, max_upload=max_upload, workers=workers, access_log=not quiet)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {index} ({app.state.served.index.info()['images']:,} images) at http://{shown}:{port}/")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found: a no-op here, so that a requested stop exits 0 rather than as killed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run(sockets=[listener])
    if not quiet:
        say("stopped")
    return OK


def _token(token_file: str | None) -> str | None:
    if token_file is not None:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--token-file {token_file}: cannot read it ({_reason(e)})") from None
        if not token:
            raise UsageError(f"--token-file {token_file}: the file is empty")
        return token
    return os.environ.get("VECSEARCH_TOKEN", "").strip() or None


def _reason(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _loopback(host: str) -> bool:
    import ipaddress
    import socket

    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        raise UsageError(f"--host {host}: no such address") from None
    return all(ipaddress.ip_address(a[4][0].split("%")[0]).is_loopback for a in found)


def _listen(host: str, port: int):
    """The listening socket, made here so that a taken port is one clear line before any work."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, as asyncio sets TCP_NODELAY only on sockets that say so: without it, each
    # response after the first on a kept-alive connection waits 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({_reason(e)})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
