"""Remote inputs are fetched within limits (operators/fetch.py), against a local HTTP server."""
from __future__ import annotations

import http.server
import os
import threading

import pytest

from vidcurate.operators.base import RecordError
from vidcurate.operators.fetch import FetchPolicy, fetch

BODY = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        hits = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/video.mp4":
            self._send(200, BODY)
        elif self.path == "/flaky.mp4" and hits < 3:  # two 503s, then the file
            self._send(503, b"busy")
        elif self.path == "/flaky.mp4":
            self._send(200, BODY)
        elif self.path == "/always-busy.mp4":
            self._send(503, b"busy")
        elif self.path == "/gone.mp4":
            self._send(404, b"no")
        elif self.path == "/forbidden.mp4":
            self._send(403, b"no")
        elif self.path == "/moved.mp4":
            self._redirect("/video.mp4")
        elif self.path == "/to-file.mp4":
            self._redirect("file:///etc/passwd")
        elif self.path == "/loop.mp4":
            self._redirect("/loop.mp4")
        elif self.path == "/chunked-big.mp4":  # no Content-Length: the cap is counted while reading
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(8):
                chunk = b"x" * 10_000
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(404, b"no")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


FAST = FetchPolicy(retries=2, backoff=0.01, timeout=5)


def _reason(uri, tmp_path, policy=FAST):
    with pytest.raises(RecordError) as info:
        fetch(uri, str(tmp_path), policy)
    return info.value.reason, info.value.transient, str(info.value)


def test_a_file_is_fetched_once_into_the_cache_and_nothing_partial_is_left(server, tmp_path):
    path = fetch(f"{server}/video.mp4", str(tmp_path), FAST)
    assert open(path, "rb").read() == BODY and path.endswith(".mp4")
    assert fetch(f"{server}/video.mp4", str(tmp_path), FAST) == path and _Handler.hits["/video.mp4"] == 1
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_transient_errors_are_retried_with_backoff_and_then_reported_as_transient(server, tmp_path):
    assert open(fetch(f"{server}/flaky.mp4", str(tmp_path), FAST), "rb").read() == BODY  # 503, 503, 200
    reason, transient, detail = _reason(f"{server}/always-busy.mp4", tmp_path)
    assert (reason, transient) == ("fetch_failed", True) and "HTTP 503 (after 3 attempts)" in detail
    assert _Handler.hits["/always-busy.mp4"] == 3
    reason, transient, _ = _reason("http://127.0.0.1:9/refused.mp4", tmp_path)  # nothing listens on port 9
    assert (reason, transient) == ("fetch_failed", True)
    assert os.listdir(tmp_path) == [n for n in os.listdir(tmp_path) if not n.endswith(".part")]


def test_missing_and_refused_objects_are_not_retried(server, tmp_path):
    assert _reason(f"{server}/gone.mp4", tmp_path)[:2] == ("file_not_found", False)
    assert _reason(f"{server}/forbidden.mp4", tmp_path)[:2] == ("fetch_failed", False)
    assert _Handler.hits["/gone.mp4"] == 1 and _Handler.hits["/forbidden.mp4"] == 1


def test_redirects_are_followed_within_the_scheme_only(server, tmp_path):
    assert open(fetch(f"{server}/moved.mp4", str(tmp_path), FAST), "rb").read() == BODY
    reason, _, detail = _reason(f"{server}/to-file.mp4", tmp_path)
    assert reason == "fetch_failed" and "another scheme; not followed" in detail
    reason, _, detail = _reason(f"{server}/loop.mp4", tmp_path)
    assert reason == "fetch_failed" and "more than 5 redirects" in detail


def test_schemes_outside_the_allowlist_and_files_over_the_size_cap_are_refused(server, tmp_path):
    assert _reason("ftp://example.com/a.mp4", tmp_path)[0] == "scheme_not_allowed"
    assert _reason(f"{server}/video.mp4", tmp_path, FetchPolicy(schemes=("https",)))[0] == "scheme_not_allowed"
    capped = FetchPolicy(max_bytes=1000, retries=0)
    reason, _, detail = _reason(f"{server}/video.mp4", tmp_path, capped)  # Content-Length says too much
    assert reason == "file_too_large" and "max_file_bytes 1000" in detail
    assert _reason(f"{server}/chunked-big.mp4", tmp_path, capped)[0] == "file_too_large"  # counted as read
    assert not os.listdir(tmp_path)
