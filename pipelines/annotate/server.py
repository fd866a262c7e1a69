"""Serving the annotation page: where it listens, its token, and uvicorn.

Localhost only by default. Listening on any other address needs ``allow_remote`` and then a
token (given, or generated and printed in the URL), because the page writes labels and serves
the dataset's clips to whoever reaches it.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import socket

from vidcurate.operators.write.layout import LABELS_FILE
from vidcurate.pipelines.annotate.app import create_app
from vidcurate.pipelines.annotate.catalog import Catalog
from vidcurate.pipelines.annotate.store import Store
from vidcurate.pipelines.annotate.studio import Studio


class ServeError(ValueError):
    """Settings the server cannot start with (the message says which and why)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_studio(out: str, labels: str | None = None, version: str | None = None, order: str = "uniform",
                overlap: int = 1, lease_seconds: float = 1800.0, seed: int = 0) -> Studio:
    """The studio of build ``out`` with its store beside ``labels`` (default OUT/labels.parquet)."""
    store = Store(labels or os.path.join(out, LABELS_FILE))
    try:
        return Studio(store, Catalog(store, out, version, seed), order=order, overlap=overlap,
                      lease_seconds=lease_seconds, seed=seed)
    except Exception:
        store.close()
        raise


def bind(host: str, port: int, allow_remote: bool, token: str | None) -> tuple[socket.socket, str | None]:
    """A listening socket on ``host:port`` (port 0: any free one) and the token to require, if any."""
    if not is_loopback(host):
        if not allow_remote:
            raise ServeError(f"--host {host} reaches beyond this machine: add --allow-remote (the page then "
                             "requires a token, printed in its URL)")
        token = token or secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose protocol says TCP; without it
    # every reply on a kept-alive connection waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock, token


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(studio: Studio, sock: socket.socket, token: str | None) -> None:
    """Run the page on ``sock`` until interrupted; the labels parquet is rewritten on the way out."""
    import uvicorn

    config = uvicorn.Config(create_app(studio, token), log_level="warning", lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; the labels are written by then
        pass
    finally:
        studio.store.close()
