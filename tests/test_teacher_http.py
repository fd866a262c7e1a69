"""Teachers over HTTP: the openai backend against a local OpenAI-compatible server (tests/openai_server.py)."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import time

import pytest
import yaml

from conftest import index_table, rejects_table, shard_samples
from openai_server import openai_server  # noqa: F401  (the fixture)
from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.generation import GenerationParams, GenerationRequest
from vidcurate.operators.models.openai_backend import OpenAIBackend
from vidcurate.operators.teachers.generative import VideoTeacher

PARAMS = GenerationParams(max_new_tokens=32, temperature=0.2, top_p=0.9, seed=7)


def _jpeg(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, format="JPEG")
    return buffer.getvalue()


FRAMES = tuple(_jpeg((40 * i, 100, 200 - 40 * i)) for i in range(4))


def _backend(server, **kwargs) -> OpenAIBackend:
    kwargs = {"backoff_base": 0.01, **kwargs}
    return OpenAIBackend(server.url, "test-vlm", revision="r1", **kwargs)


def _clip(clip_id: str = "clip-1") -> dict:
    return {"clip_id": clip_id, "uri": "x.mp4", "title": "city bicycles", "keyframes": list(FRAMES), "status": "ok"}


def _image_parts(body: dict) -> list[dict]:
    return [p for p in body["messages"][-1]["content"] if p["type"] == "image_url"]


# ---- (a) a whole build on real footage --------------------------------------------------------------------
def _samples(out) -> dict[str, dict]:
    return {key: json.loads(sample["json"]) for key, sample in shard_samples(out).items()}


@pytest.mark.slow
def test_build_with_an_http_video_teacher(openai_server, corpus, tmp_path):
    from vidcurate.pipelines.build import build
    from vidcurate.pipelines.build.config import load_config

    config = {
        "pipeline": [
            {"op": "probe"},
            {"op": "split_shots", "detector": "content", "threshold": 25, "min_scene_len": 15, "decode_width": 128},
            {"op": "extract_clips", "keyframes": "uniform", "num_keyframes": 4, "max_height": 240,
             "asr_audio": False, "keyframe_max_side": 128},
            {"op": "video_teacher", "backend": "openai", "model": "test-vlm", "revision": "v1",
             "endpoint": openai_server.url, "num_frames": 4, "concurrency": 4, "prompt": "Summarize: {title}"},
            {"op": "consensus_selector"},
        ],
        "run": {"max_failure_ratio": 0.8},
    }
    path = tmp_path / "http.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = build(str(corpus["manifest"]), str(out), load_config(str(path)))
    assert result.inputs_with_samples == 2

    rows = index_table(out)
    samples = _samples(out)
    assert rows and {r["key"] for r in rows} == set(samples)
    titles = {json.loads(line)["uri"]: json.loads(line).get("title")
              for line in corpus["manifest"].read_text().splitlines()}
    for row in rows:
        meta = samples[row["key"]]
        [candidate] = [c for c in meta["candidates"] if c["teacher"] == "video_teacher"]
        assert candidate["model_id"] == "test-vlm" and candidate["model_revision"] == "v1"
        params = candidate["params"]  # an object in the sample json
        assert params["backend"] == "openai" and params["endpoint"] == openai_server.url
        assert params["num_images"] == 4 and params["max_new_tokens"] == 64 and params["prompt"] == "Summarize: {title}"
        title = titles[os.path.basename(row["uri"])]
        assert meta["caption"] == candidate["text"] == f"A clip with 4 frames about {' '.join(title.split()[-3:])}."
        assert meta["rejected_candidates"] == []
    # Broken inputs never reached the teacher; each clip was one request with its frames inline.
    assert {r["stage"] for r in rejects_table(out)} <= {"probe", "split_shots"}
    assert openai_server.attempts == len(rows)
    for body in openai_server.bodies:
        assert body["model"] == "test-vlm" and body["max_tokens"] == 64 and body["seed"] == 0
        parts = body["messages"][-1]["content"]
        assert [p["type"] for p in parts] == ["image_url"] * 4 + ["text"]
        for part in parts[:4]:
            url = part["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            assert base64.b64decode(url.split(",", 1)[1])[:2] == b"\xff\xd8"
        assert parts[-1]["text"] in {f"Summarize: {t}" for t in titles.values()}
    assert {b["messages"][-1]["content"][-1]["text"] for b in openai_server.bodies} == {
        "Summarize: A car ride and city bicycles", "Summarize: Big Buck Bunny wakes up"}


# ---- the request format ------------------------------------------------------------------------------------
def test_request_body_frames_in_order_then_prompt(openai_server):
    backend = _backend(openai_server, api_key="sk-test")
    try:
        [gen] = backend.generate([GenerationRequest("Describe it.", FRAMES, system="Be brief.")], PARAMS)
        [plain] = backend.generate([GenerationRequest("Only text here.")], PARAMS)
    finally:
        backend.close()
    assert gen.error is None and gen.text == "A clip with 4 frames about Describe it."
    assert gen.tokens == len(gen.text.split()) and gen.extra["attempts"] == 1
    assert plain.text == "A clip with 0 frames about Only text here."
    body, text_body = openai_server.bodies
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in _image_parts(body)] == list(FRAMES)
    assert body["messages"][1]["content"][-1] == {"type": "text", "text": "Describe it."}
    assert {k: body[k] for k in ("model", "max_tokens", "temperature", "top_p", "seed")} == {
        "model": "test-vlm", "max_tokens": 32, "temperature": 0.2, "top_p": 0.9, "seed": 7}
    assert text_body["messages"] == [{"role": "user", "content": "Only text here."}]
    assert openai_server.headers[0]["Authorization"] == "Bearer sk-test"


def test_teacher_reads_api_key_from_env(openai_server, monkeypatch):
    monkeypatch.setenv("VIDCURATE_TEST_KEY", "sk-env")
    teacher = VideoTeacher(model="test-vlm", backend="openai", endpoint=openai_server.url,
                           api_key_env="VIDCURATE_TEST_KEY", num_frames=2)
    [record] = teacher([_clip()])
    teacher.close()
    assert record["candidates"][0]["text"] == "A clip with 2 frames about in one sentence."
    assert openai_server.headers[0]["Authorization"] == "Bearer sk-env"
    monkeypatch.delenv("VIDCURATE_TEST_KEY")
    teacher = VideoTeacher(model="test-vlm", backend="openai", endpoint=openai_server.url,
                           api_key_env="VIDCURATE_TEST_KEY")
    teacher([_clip()])
    teacher.close()
    assert "Authorization" not in openai_server.headers[1]


# ---- (b) concurrency and order ------------------------------------------------------------------------------
def test_concurrent_requests_come_back_in_input_order(openai_server):
    # Earlier requests are answered later, so arrival order differs from input order.
    openai_server.delay = lambda body: 0.05 * (8 - int(body["messages"][-1]["content"].split()[-1]))
    backend = _backend(openai_server, concurrency=4)
    try:
        started = time.perf_counter()
        gens = backend.generate([GenerationRequest(f"Describe request number {i}") for i in range(8)], PARAMS)
        elapsed = time.perf_counter() - started
    finally:
        backend.close()
    assert [g.text for g in gens] == [f"A clip with 0 frames about request number {i}." for i in range(8)]
    assert 1 < openai_server.max_in_flight <= 4
    assert elapsed < 0.05 * sum(range(1, 9))  # well under the serial time (1.8 s)


# ---- (c) retries ----------------------------------------------------------------------------------------------
def test_injected_500s_are_retried_until_success(openai_server):
    openai_server.fail_first = 2
    backend = _backend(openai_server, max_retries=3)
    try:
        [gen] = backend.generate([GenerationRequest("Describe it.", FRAMES[:1])], PARAMS)
    finally:
        backend.close()
    assert gen.error is None and gen.text == "A clip with 1 frames about Describe it."
    assert openai_server.attempts == 3 and gen.extra["attempts"] == 3


def test_retries_exhausted_is_a_transient_http_error(openai_server):
    openai_server.fail_first = 10
    backend = _backend(openai_server, max_retries=2)
    try:
        [gen] = backend.generate([GenerationRequest("Describe it.")], PARAMS)
    finally:
        backend.close()
    assert (gen.error, gen.transient, gen.extra["status"]) == ("http_error", True, 500)
    assert openai_server.attempts == 3
    assert "HTTP 500" in gen.detail and "injected failure" in gen.detail and openai_server.url in gen.detail
    assert "after 3 attempts" in gen.detail


def test_retry_after_is_honoured(openai_server):
    openai_server.fail_first, openai_server.fail_status, openai_server.retry_after = 1, 429, "1"
    backend = _backend(openai_server, max_retries=1)
    try:
        started = time.perf_counter()
        [gen] = backend.generate([GenerationRequest("Describe it.")], PARAMS)
        elapsed = time.perf_counter() - started
    finally:
        backend.close()
    assert gen.error is None and openai_server.attempts == 2
    assert elapsed >= 0.9


# ---- (d) timeouts: the clip stays, its candidate is listed as rejected ----------------------------------------------
def test_timeout_is_a_transient_rejected_candidate_not_a_lost_clip(openai_server):
    openai_server.delay = 3.0
    teacher = VideoTeacher(model="test-vlm", backend="openai", endpoint=openai_server.url, timeout_seconds=0.3,
                           max_retries=1)
    try:
        started = time.perf_counter()
        [record] = teacher([_clip()])
        elapsed = time.perf_counter() - started
    finally:
        teacher.close()
    assert record["status"] == "ok" and record["clip_id"] == "clip-1" and record["candidates"] == []
    [failed] = record["rejected_candidates"]
    assert (failed["teacher"], failed["reason"], failed["transient"]) == ("video_teacher", "http_timeout", True)
    assert openai_server.url in failed["detail"]
    assert openai_server.attempts == 2  # timeouts are retried
    assert elapsed < 2.5
    assert teacher.stats.counters["video_teacher.candidate_rejected.http_timeout"] == 1


# ---- (e) client errors are not retried -------------------------------------------------------------------------------
def test_400_is_an_http_error_without_retries(openai_server):
    openai_server.reject_model = "no-such-model"
    backend = OpenAIBackend(openai_server.url, "no-such-model", max_retries=3, backoff_base=0.01)
    try:
        [gen] = backend.generate([GenerationRequest("Describe it.", FRAMES[:1])], PARAMS)
    finally:
        backend.close()
    assert (gen.error, gen.transient, gen.extra["status"]) == ("http_error", False, 400)
    assert openai_server.attempts == 1
    assert "HTTP 400" in gen.detail and "`no-such-model` does not exist" in gen.detail
    assert openai_server.url in gen.detail


def test_malformed_answer_and_unreachable_server(openai_server):
    openai_server.bad_body = True
    backend = _backend(openai_server)
    try:
        [gen] = backend.generate([GenerationRequest("Describe it.")], PARAMS)
    finally:
        backend.close()
    assert gen.error == "bad_response" and not gen.transient and openai_server.url in gen.detail
    assert openai_server.attempts == 1

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "test-vlm", max_retries=1, backoff_base=0.01, timeout=2)
    try:
        [gen] = backend.generate([GenerationRequest("Describe it.")], PARAMS)
    finally:
        backend.close()
    assert (gen.error, gen.transient) == ("connection_error", True)
    assert f"127.0.0.1:{port}" in gen.detail and gen.extra["attempts"] == 2


# ---- (f) client-side rate limit ---------------------------------------------------------------------------------------
def test_requests_per_second_limits_the_rate(openai_server):
    backend = _backend(openai_server, concurrency=6, requests_per_second=5)
    try:
        started = time.perf_counter()
        gens = backend.generate([GenerationRequest(f"Describe request {i}") for i in range(6)], PARAMS)
        elapsed = time.perf_counter() - started
    finally:
        backend.close()
    assert all(g.error is None for g in gens)
    assert elapsed >= 0.9  # 6 requests at 5/s: the last starts 1 s after the first


# ---- (g) configuration errors ------------------------------------------------------------------------------------------
def test_missing_endpoint_is_a_config_error_naming_the_step(tmp_path):
    from vidcurate.pipelines.build.config import ConfigError, load_config

    config = tmp_path / "no-endpoint.yaml"
    config.write_text("pipeline:\n  - op: probe\n  - op: split_shots\n  - op: extract_clips\n"
                      "  - op: video_teacher\n    model: test-vlm\n    backend: openai\n"
                      "  - op: consensus_selector\n")
    with pytest.raises(ConfigError, match=r"step 4 \(video_teacher\).*needs 'endpoint'.*http://HOST:8000/v1"):
        load_config(str(config))
    with pytest.raises(OperatorSetupError, match="endpoint must be an http"):
        VideoTeacher(model="test-vlm", backend="openai", endpoint="localhost:8000").setup()


def test_served_models_are_listed(openai_server):
    import requests

    data = requests.get(f"{openai_server.url}/models", timeout=5).json()
    assert [m["id"] for m in data["data"]] == ["test-vlm"]
