"""A small local OpenAI-compatible server for tests: deterministic answers, recorded requests, faults.

    from openai_server import openai_server  # the pytest fixture

    def test_x(openai_server):
        openai_server.fail_first = 2          # the first 2 requests get HTTP 500
        ... endpoint=openai_server.url ...    # http://127.0.0.1:<port>/v1
        openai_server.bodies                  # every JSON body received, in arrival order

``POST /v1/chat/completions`` answers "A clip with N frames about <last words of the prompt>."
where N counts the ``image_url`` parts, so a test can see that frames and the rendered
prompt arrived. ``GET /v1/models`` lists ``served_model``. Fault knobs (set any time):

  fail_first, fail_status, retry_after   the first N chat requests get fail_status (500),
                                         with a Retry-After header when retry_after is set
  delay                                  seconds (or a function of the body) before answering
  reject_model                           requests for this model name get HTTP 400
  bad_body                               answer 200 with a body that is not JSON

``attempts`` counts chat requests; ``max_in_flight`` is the most handled at once.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

import pytest


class FakeOpenAIServer:
    def __init__(self, served_model: str = "test-vlm"):
        self.served_model = served_model
        self.fail_first = 0
        self.fail_status = 500
        self.retry_after: str | None = None
        self.delay: Union[float, Callable[[dict], float]] = 0.0
        self.reject_model: str | None = None
        self.bad_body = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.attempts = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # clients that gave up (timeouts) are expected
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes delayed handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # ---- what the handler calls ------------------------------------------------------
    def _chat(self, body: dict, headers: dict) -> tuple[int, dict, bytes]:
        with self._lock:
            self.attempts += 1
            number = self.attempts
            self.bodies.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delay(body) if callable(self.delay) else self.delay
            if delay:
                self._stop.wait(delay)
            if number <= self.fail_first:
                extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
                return self.fail_status, extra, _error(f"injected failure {number} of {self.fail_first}",
                                                       "InternalServerError", self.fail_status)
            if self.reject_model is not None and body.get("model") == self.reject_model:
                return 400, {}, _error(f"The model `{body.get('model')}` does not exist.", "BadRequestError", 400)
            if self.bad_body:
                return 200, {}, b"<html>this is not json</html>"
            return 200, {}, json.dumps(self.answer(body, number)).encode()
        finally:
            with self._lock:
                self.in_flight -= 1

    def answer(self, body: dict, number: int) -> dict:
        images, prompt = 0, ""
        for message in body.get("messages", []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                prompt = content
            else:
                for part in content:
                    if part.get("type") == "image_url":
                        images += 1
                    elif part.get("type") == "text":
                        prompt = part["text"]
        words = re.findall(r"[\w'-]+", prompt)[-3:]
        text = f"A clip with {images} frames about {' '.join(words)}."
        return {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10 + images, "completion_tokens": len(text.split()),
                          "total_tokens": 10 + images + len(text.split())}}


def _error(message: str, kind: str, status: int) -> bytes:
    return json.dumps({"object": "error", "error": {"message": message, "type": kind, "code": status}}).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {}, json.dumps({"object": "list", "data": [
                {"id": self.fake.served_model, "object": "model", "owned_by": "vidcurate-tests"}]}).encode())
        else:
            self._send(404, {}, _error(f"no route {self.path}", "NotFound", 404))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {}, _error(f"no route {self.path}", "NotFound", 404))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, {}, _error("body is not JSON", "BadRequestError", 400))
            return
        status, headers, payload = self.fake._chat(body, dict(self.headers))
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left


@pytest.fixture
def openai_server():
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()
