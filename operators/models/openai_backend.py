"""GenerationBackend for an OpenAI-compatible Chat Completions server (vLLM, SGLang, TGI).

Each :class:`GenerationRequest` becomes one ``POST {endpoint}/chat/completions``::

    {"model": <served name>, "max_tokens": .., "temperature": .., "top_p": .., "seed": ..,
     "messages": [{"role": "system", "content": <system>},                  # when set
                  {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,.."}},
                                               ...one part per frame, in time order...,
                                               {"type": "text", "text": <prompt>}]}]}

(a request without frames sends the prompt as a plain string). A batch runs on a pool of
``concurrency`` threads, each with its own ``requests.Session``; answers come back in
input order. Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
backoff and jitter (``Retry-After`` honoured); other 4xx are not. An optional token
bucket shared by all threads caps the request rate (every attempt takes a token).

A failed request never raises: its :class:`Generation` carries a stable ``error``:
``http_timeout`` and ``connection_error`` (transient), ``http_error`` (the detail holds
the status and the server's message; transient for 429/5xx), ``bad_response`` (not JSON,
or no choices). Every detail names the endpoint.
"""
from __future__ import annotations

import base64
import email.utils
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.generation import Generation, GenerationParams, GenerationRequest

RETRY_STATUS = frozenset({429, *range(500, 600)})  # overload and server errors; other 4xx are the request's fault


class RateLimiter:
    """A token bucket of capacity one, shared by threads: at most ``rate`` acquisitions per second."""

    def __init__(self, rate: float):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class OpenAIBackend:
    """Chat Completions over HTTP. ``model_id`` is the served model name; ``revision`` is recorded only."""

    def __init__(self, endpoint: str, model: str, revision: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 3,
                 requests_per_second: float | None = None, backoff_base: float = 0.5, backoff_max: float = 30.0):
        if not endpoint or not endpoint.startswith(("http://", "https://")):
            raise OperatorSetupError(f"openai backend: endpoint must be an http(s) URL such as "
                                     f"http://host:8000/v1, got {endpoint!r}")
        if concurrency < 1:
            raise OperatorSetupError(f"openai backend: concurrency must be >= 1, got {concurrency}")
        self.endpoint = endpoint.rstrip("/")
        self.url = f"{self.endpoint}/chat/completions"
        self.model_id = model
        self.revision = revision
        self.api_key = api_key or None
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._limiter = RateLimiter(requests_per_second) if requests_per_second else None
        self._local = threading.local()
        self._sessions: list = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_teacher(cls, teacher) -> "OpenAIBackend":
        """The backend a teacher operator's fields describe (its ``setup()`` calls this)."""
        if not teacher.endpoint:
            raise OperatorSetupError(
                f"{teacher.name}: backend 'openai' needs 'endpoint', the base URL of an OpenAI-compatible "
                f"server (e.g. endpoint: http://localhost:8000/v1 for vLLM serving {teacher.model!r})")
        return cls(teacher.endpoint, teacher.model, revision=teacher.revision,
                   api_key=os.environ.get(teacher.api_key_env) or None, concurrency=teacher.concurrency,
                   timeout=teacher.timeout_seconds, max_retries=teacher.max_retries,
                   requests_per_second=teacher.requests_per_second)

    # ---- GenerationBackend -------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest], params: GenerationParams) -> list[Generation]:
        if not requests:
            return []
        if len(requests) == 1:
            return [self._guarded(requests[0], params)]
        pool = self._executor()
        futures = [pool.submit(self._guarded, request, params) for request in requests]
        return [future.result() for future in futures]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            sessions, self._sessions = self._sessions, []
        if pool is not None:
            pool.shutdown(wait=True)
        for session in sessions:
            session.close()
        self._local = threading.local()

    # ---- one request -------------------------------------------------------------------
    def payload(self, request: GenerationRequest, params: GenerationParams) -> dict:
        """The Chat Completions body for one request."""
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        if request.images:
            content = [{"type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")}}
                       for image in request.images]
            content.append({"type": "text", "text": request.prompt})
        else:
            content = request.prompt
        messages.append({"role": "user", "content": content})
        return {"model": self.model_id, "messages": messages, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}

    def _guarded(self, request: GenerationRequest, params: GenerationParams) -> Generation:
        try:
            return self._generate_one(request, params)
        except Exception as exc:  # a bug or an unforeseen input: one failed request, not a failed batch
            return Generation(error="unexpected_error", detail=f"POST {self.url}: {type(exc).__name__}: {exc}")

    def _generate_one(self, request: GenerationRequest, params: GenerationParams) -> Generation:
        import requests as http

        body = json.dumps(self.payload(request, params))
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempts = 0
        while True:
            attempts += 1
            last = attempts > self.max_retries
            retry_after = None
            if self._limiter is not None:
                self._limiter.acquire()
            try:
                response = self._session().post(self.url, data=body, headers=headers, timeout=self.timeout)
            except http.Timeout as exc:
                failure = Generation(error="http_timeout", transient=True,
                                     detail=f"POST {self.url}: no answer within {self.timeout:g} s "
                                            f"({type(exc).__name__}){_tries(attempts)}")
            except (http.ConnectionError, http.exceptions.ChunkedEncodingError) as exc:
                failure = Generation(error="connection_error", transient=True,
                                     detail=f"POST {self.url}: cannot connect: {_short(exc)}{_tries(attempts)}")
            except http.RequestException as exc:  # invalid URL, too many redirects: retrying will not help
                return Generation(error="connection_error", detail=f"POST {self.url}: {type(exc).__name__}: "
                                                                    f"{_short(exc)}", extra={"attempts": attempts})
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._parse(response, attempts)
                retryable = status in RETRY_STATUS
                failure = Generation(error="http_error", transient=retryable,
                                     detail=f"POST {self.url}: HTTP {status}: {_server_message(response)}"
                                            f"{_tries(attempts)}", extra={"status": status})
                if not retryable:
                    failure.extra["attempts"] = attempts
                    return failure
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if last:
                failure.extra["attempts"] = attempts
                return failure
            time.sleep(self._backoff(attempts, retry_after))

    def _parse(self, response, attempts: int) -> Generation:
        where = f"POST {self.url}: HTTP {response.status_code}"
        try:
            data = response.json()
        except ValueError:
            return Generation(error="bad_response", extra={"attempts": attempts},
                              detail=f"{where}: the body is not JSON: {response.text[:200]!r}")
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return Generation(error="bad_response", extra={"attempts": attempts},
                              detail=f"{where}: no choices in the answer: {json.dumps(data)[:200]}")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            return Generation(error="bad_response", extra={"attempts": attempts},
                              detail=f"{where}: the first choice has no message: {json.dumps(choice)[:200]}")
        content = message.get("content")
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        elif content is not None and not isinstance(content, str):
            return Generation(error="bad_response", extra={"attempts": attempts},
                              detail=f"{where}: message content is not text: {json.dumps(message)[:200]}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        return Generation(text=content or "", tokens=tokens if isinstance(tokens, int) else 0,
                          extra={"attempts": attempts, "served_model": data.get("model"),
                                 "finish_reason": choice.get("finish_reason")})

    # ---- plumbing ----------------------------------------------------------------------
    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="vidcurate-openai")
            return self._pool

    def _session(self):
        """This thread's session (requests.Session is not documented as thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            import requests as http

            session = http.Session()
            session.mount("http://", http.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
            session.mount("https://", http.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session


def _tries(attempts: int) -> str:
    return f" (after {attempts} attempts)" if attempts > 1 else ""


def _short(exc: BaseException) -> str:
    return str(exc)[:300]


def _server_message(response) -> str:
    """The error message of an OpenAI-style (vLLM, SGLang, TGI) error body, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                return data[key][:300]
    return json.dumps(data)[:300]


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
