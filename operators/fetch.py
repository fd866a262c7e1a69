"""Fetching remote inputs: a local copy of an http(s) or fsspec URL, within limits.

A build reads millions of URLs it did not write, so fetching is fenced in:
- only the schemes of ``FetchPolicy.schemes`` are fetched (``file`` is a local path);
- http(s) goes through requests with redirects followed by hand: at most ``max_redirects``,
  and never to another scheme (an https URL cannot send the fetch to ``file://`` or to plain
  http);
- at most ``max_bytes`` are read (a declared Content-Length over it is refused unread);
- each attempt has a ``timeout`` (connect and between bytes); transient failures (network
  errors, timeouts, 408/429/5xx) are retried with exponential backoff, up to ``retries``
  more times, and then become a transient ``fetch_failed`` reject (``--retry-failed`` redoes
  it); a missing object (404, 410, no such key) is ``file_not_found`` at once.
The copy is written next to its name (``.part``) and renamed, so a cache never holds half a file.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from vidcurate.operators.base import RecordError

DEFAULT_SCHEMES = ("http", "https", "s3", "gs", "gcs", "az", "abfs", "hf")
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
CHUNK = 1 << 22


@dataclass(frozen=True)
class FetchPolicy:
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    max_bytes: int | None = None
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0  # seconds before the first retry; doubled each time
    max_redirects: int = 5


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def fetch(uri: str, cache_dir: str, policy: FetchPolicy) -> str:
    """A local copy of remote ``uri`` in ``cache_dir`` (fetched once; later calls reuse it)."""
    scheme = scheme_of(uri)
    if scheme not in policy.schemes:
        raise RecordError("scheme_not_allowed", f"{uri}: {scheme}:// inputs are not fetched (allowed: "
                                                f"{', '.join(policy.schemes)}; probe.allowed_schemes)")
    os.makedirs(cache_dir, exist_ok=True)
    suffix = os.path.splitext(urlsplit(uri).path)[1][:8]
    target = os.path.join(cache_dir, hashlib.sha1(uri.encode("utf-8", "surrogateescape")).hexdigest() + suffix)
    if os.path.exists(target):
        return target
    partial = f"{target}.{os.getpid()}.part"
    copy = _http_copy if scheme in ("http", "https") else _fsspec_copy
    try:
        for attempt in range(policy.retries + 1):
            try:
                copy(uri, partial, policy)
                break
            except _Transient as exc:
                if attempt == policy.retries:
                    raise RecordError("fetch_failed", f"{uri}: {exc} (after {attempt + 1} attempts)",
                                      transient=True) from None
                time.sleep(policy.backoff * 2 ** attempt)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


class _Transient(Exception):
    """A failure worth another attempt."""


def _http_copy(uri: str, partial: str, policy: FetchPolicy) -> None:
    import requests

    url, scheme = uri, scheme_of(uri)
    for _ in range(policy.max_redirects + 1):
        try:
            response = requests.get(url, stream=True, timeout=policy.timeout, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        with response:
            if response.is_redirect:
                target = urljoin(url, response.headers.get("location", ""))
                if scheme_of(target) != scheme:
                    raise RecordError("fetch_failed", f"{uri}: redirected to {target}, another scheme; not followed")
                url = target
                continue
            if response.status_code in (404, 410):
                raise RecordError("file_not_found", f"{uri}: HTTP {response.status_code}")
            if response.status_code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise RecordError("fetch_failed", f"{uri}: HTTP {response.status_code} {response.reason}")
            declared = response.headers.get("content-length")
            if policy.max_bytes and declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise RecordError("file_too_large", f"{uri}: {declared} bytes > max_file_bytes {policy.max_bytes}")
            try:
                _write_capped(response.iter_content(CHUNK), partial, uri, policy)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Transient(f"{type(exc).__name__} while reading: {exc}") from None
            return
    raise RecordError("fetch_failed", f"{uri}: more than {policy.max_redirects} redirects")


def _fsspec_copy(uri: str, partial: str, policy: FetchPolicy) -> None:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as src:
            _write_capped(iter(lambda: src.read(CHUNK), b""), partial, uri, policy)
    except FileNotFoundError as exc:
        raise RecordError("file_not_found", f"{uri}: no such object ({exc})") from None
    except (ImportError, ValueError) as exc:
        raise RecordError("fetch_failed", f"{uri}: cannot open: {exc}") from None
    except OSError as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None


def _write_capped(chunks, partial: str, uri: str, policy: FetchPolicy) -> None:
    written = 0
    with open(partial, "wb") as out:
        for chunk in chunks:
            written += len(chunk)
            if policy.max_bytes and written > policy.max_bytes:
                raise RecordError("file_too_large", f"{uri}: more than max_file_bytes {policy.max_bytes} bytes")
            out.write(chunk)
