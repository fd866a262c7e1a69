"""The annotation studio over HTTP: labels stored and exported, validation, restarts, ranged mp4s,
K-annotator assignment, clip orders, agreement, the token, and the CLI serving a real socket."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter

import httpx
import pyarrow.parquet as pq
import pytest
from conftest import VIDCURATE, run_cli, synth_world
from starlette.testclient import TestClient

from vidcurate.operators.write.layout import read_clip_mp4
from vidcurate.operators.write.versions import write_version
from vidcurate.pipelines.labels.agreement import agreement
from vidcurate.pipelines.annotate.app import create_app
from vidcurate.pipelines.annotate.server import ServeError, bind, open_studio
from vidcurate.schemas.labels import read_labels


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("annotate") / "world"
    synth_world(out, "--clips", "40", "--seed", "11", "--label-share", "0.5")
    return out


@pytest.fixture
def labels(tmp_path):
    return str(tmp_path / "labels" / "labels.parquet")


def client(world, labels, annotator=None, **options):
    token = options.pop("token", None)
    app = create_app(open_studio(str(world), labels, **options), token=token)
    http = TestClient(app)
    if annotator:
        http.headers["X-Annotator"] = annotator
    return http


def answer(http, mode="best", **fields):
    shown = http.get(f"/api/next/{mode}").json()
    payload = {"assignment": shown["assignment"], "shown": shown["shown"], "choice": 0, **fields}
    return shown, http.post("/api/submit", json=payload)


def stored(labels):
    with sqlite3.connect(labels.replace(".parquet", ".sqlite")) as db:
        return db.execute("SELECT count(*) FROM judgments").fetchone()[0]


def index_rows(world):
    return {r["clip_id"]: r for r in pq.read_table(os.path.join(world, "index.parquet")).to_pylist()}


def test_a_pick_is_stored_exported_and_read_back_as_labels(world, labels):
    with client(world, labels, "ana") as http:
        shown, response = answer(http, choice=1, seconds=4.5)
        assert response.status_code == 200, response.text
        assert set(shown) >= {"assignment", "clip_id", "shown", "candidates", "video"}
        assert "teachers" not in shown  # teacher names hidden
    rows = read_labels(labels)  # stopping the app rewrote the parquet
    assert len(rows) == 1 and rows[0]["annotator"] == "ana" and rows[0]["choice"] == 1
    assert [c["text"] for c in rows[0]["candidates"]] == shown["candidates"]
    assert rows[0]["seconds"] == 4.5 and rows[0]["acceptable"] is None and rows[0]["corrected"] is None
    # The candidates are stored in the order this annotator saw them, with their teachers.
    teachers = {c["teacher"] for c in rows[0]["candidates"]}
    assert len(teachers) == len(shown["candidates"]) and "unknown" not in teachers


def test_the_exported_labels_train_a_retriever(world, labels, tmp_path):
    from test_retriever import tiny_finetune

    with client(world, labels, "ana") as http:
        for _ in range(12):
            assert answer(http, choice=0)[1].status_code == 200
    done = tiny_finetune(world, tmp_path / "ckpt", "--epochs", "1", "--labels", labels)
    assert done.returncode == 0, done.stderr
    assert "judgments of 12 clips" in done.stdout  # every exported judgment read, none left out


def test_bad_answers_are_refused_with_a_reason_and_nothing_is_stored(world, labels):
    with client(world, labels, "ana") as http:
        shown = http.get("/api/next/best").json()
        base = {"assignment": shown["assignment"], "shown": shown["shown"]}
        cases = [
            ({**base, "choice": len(shown["candidates"])}, 422, "choice"),
            ({**base, "choice": -2}, 422, "choice"),
            ({**base, "choice": "1"}, 422, "choice"),
            ({**base, "choice": 0, "shown": list(reversed(shown["shown"]))}, 409, "stale candidate order"),
            ({**base, "choice": 0, "assignment": 99999}, 404, "no assignment"),
            ({**base, "choice": 0, "corrected": "x"}, 422, "correction mode"),
            ({**base, "choice": 0, "seconds": -1}, 422, "seconds"),
        ]
        for payload, status, words in cases:
            response = http.post("/api/submit", json=payload)
            assert response.status_code == status, (payload, response.text)
            assert words in response.json()["error"]
        assert http.post("/api/submit", content=b"{not json", headers={"content-type": "application/json"}
                         ).status_code == 400
        assert http.get("/api/next/nonsense").status_code == 404
        assert http.get("/clips/nope_00000000_00001000.mp4").status_code == 404
        other = TestClient(http.app)
        other.headers["X-Annotator"] = "bob"
        assert other.post("/api/submit", json={**base, "choice": 0}).status_code == 403
        assert TestClient(http.app).post("/api/submit", json={**base, "choice": 0}).status_code == 401
        assert stored(labels) == 0
        # The same answer, well formed, is stored once even when the client retries it.
        first = http.post("/api/submit", json={**base, "choice": 0, "submission_id": "retry-1"}).json()
        again = http.post("/api/submit", json={**base, "choice": 0, "submission_id": "retry-1"}).json()
        assert first["repeated"] is False and again == {**first, "repeated": True}
        assert stored(labels) == 1


def test_a_restart_keeps_every_label_and_the_held_clip(world, labels):
    with client(world, labels, "ana") as http:
        for _ in range(3):
            assert answer(http)[1].status_code == 200
        held = http.get("/api/next/best").json()
    with client(world, labels, "ana") as http:  # a new server process on the same store
        assert http.get("/api/next/best").json()["assignment"] == held["assignment"]  # same clip, same order
        assert http.get("/api/progress").json()["by_annotator"]["ana"]["best"] == 3
    assert len(read_labels(labels)) == 3


def test_a_killed_server_loses_no_submitted_label(world, labels, tmp_path):
    """SIGKILL right after the page heard "stored": the store has it, and export rebuilds the parquet."""
    server, base = start_server(world, labels)
    try:
        http = httpx.Client(base_url=base, headers={"X-Annotator": "ana"})
        for _ in range(4):
            shown = http.get("/api/next/best").json()
            assert http.post("/api/submit", json={"assignment": shown["assignment"], "shown": shown["shown"],
                                                   "choice": 0}).status_code == 200
    finally:
        server.kill()
        server.wait(timeout=30)
    os.remove(labels)
    done = run_cli("annotate", "export", str(world), "--labels", labels)
    assert done.returncode == 0, done.stderr
    assert len(read_labels(labels)) == 4


def test_range_requests_return_the_clips_bytes(world, labels):
    rows = index_rows(world)
    with client(world, labels, "ana") as http:
        clip_id = http.get("/api/next/best").json()["clip_id"]
        whole = read_clip_mp4(str(world), rows[clip_id])
        full = http.get(f"/clips/{clip_id}.mp4")
        assert full.status_code == 200 and full.content == whole and full.headers["accept-ranges"] == "bytes"
        assert full.headers["content-type"] == "video/mp4"
        for header, (first, last) in {"bytes=0-99": (0, 99), "bytes=100-": (100, len(whole) - 1),
                                      "bytes=-50": (len(whole) - 50, len(whole) - 1),
                                      f"bytes=10-{len(whole) + 500}": (10, len(whole) - 1)}.items():
            part = http.get(f"/clips/{clip_id}.mp4", headers={"Range": header})
            assert part.status_code == 206, header
            assert part.content == whole[first:last + 1], header
            assert part.headers["content-range"] == f"bytes {first}-{last}/{len(whole)}"
        beyond = http.get(f"/clips/{clip_id}.mp4", headers={"Range": f"bytes={len(whole)}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(whole)}"
        assert http.get(f"/clips/{clip_id}.mp4", headers={"Range": "pages=1-2"}).status_code == 416
    assert not any(name.endswith(".mp4") for _, _, files in os.walk(world) for name in files)  # nothing unpacked


def test_each_clip_goes_to_k_annotators_blind_and_agreement_is_shown(world, labels):
    with client(world, labels, overlap=2) as http:
        people = {name: TestClient(http.app, headers={"X-Annotator": name}) for name in ("ana", "bob", "cy")}
        judged: dict[str, list[str]] = {}
        for _round in range(6):
            for name, person in people.items():
                shown, response = answer(person, choice=0)
                assert response.status_code == 200
                judged.setdefault(shown["clip_id"], []).append(name)
        assert all(len(names) <= 2 and len(set(names)) == len(names) for names in judged.values())
        # Clips started by one annotator are finished by a second before fresh ones are opened.
        assert sum(len(names) == 2 for names in judged.values()) >= 8
        progress = http.get("/api/progress").json()
        assert progress["done"]["best"] == sum(len(n) == 2 for n in judged.values())
        pairs = {tuple(p["annotators"]): p for p in progress["agreement"]["by_pair"]}
        assert pairs and all(0 <= p["agreement"] <= 1 for p in pairs.values())
        assert sum(p["clips"] for p in pairs.values()) == progress["agreement"]["pairs"]
        page = people["ana"].get("/", cookies={"vidcurate_annotator": "ana"}).text
        assert "Agreement on best-caption picks" in page
        assert any(f"{a} &amp; {b}" in page for a, b in pairs)


def test_agreement_on_hand_made_labels():
    def row(clip, who, choice, shown=("a", "b", "c")):
        return {"clip_id": clip, "annotator": who, "choice": choice,
                "candidates": [{"teacher": t, "text": t.upper()} for t in shown]}

    rows = [row("c1", "ana", 0), row("c1", "bob", 2, shown=("b", "c", "a")),  # both chose teacher a: agree
            row("c2", "ana", 1), row("c2", "bob", 0),  # b vs a: disagree
            row("c3", "ana", -1), row("c3", "cy", -1), row("c3", "bob", 1)]  # all bad x2 agree; b disagrees
    found = agreement(rows)
    assert found["pairs"] == 5 and found["overall"] == pytest.approx(2 / 5)
    by_pair = {tuple(p["annotators"]): (p["clips"], p["agreement"]) for p in found["by_pair"]}
    assert by_pair == {("ana", "bob"): (3, pytest.approx(1 / 3)), ("ana", "cy"): (1, 1.0), ("bob", "cy"): (1, 0.0)}


def test_skip_and_undo(world, labels):
    with client(world, labels, "ana") as http:
        first = http.get("/api/next/best").json()
        assert http.post("/api/skip", json={"assignment": first["assignment"]}).status_code == 200
        second, response = answer(http, choice=1)
        assert second["clip_id"] != first["clip_id"] and response.status_code == 200
        third = http.get("/api/next/best").json()
        undone = http.post("/api/undo", json={}).json()
        assert undone["undone"] == second["clip_id"]
        again = http.get("/api/next/best").json()
        assert (again["clip_id"], again["shown"]) == (second["clip_id"], second["shown"])
        assert third["clip_id"] != again["clip_id"]
        # The clip that was on screen when undo was pressed comes back after the undone one.
        assert answer(http)[1].status_code == 200
        assert http.get("/api/next/best").json()["clip_id"] == third["clip_id"]
        assert http.post("/api/undo", json={}).json()["undone"] == second["clip_id"]
        assert stored(labels) == 0
        assert http.post("/api/undo", json={}).status_code == 409
        # Nobody else got the skipped clip's slot taken: another annotator can still be served it.
        bob = TestClient(http.app, headers={"X-Annotator": "bob"})
        assert bob.get("/api/next/best").json()["clip_id"] == first["clip_id"]


def test_correction_and_acceptable_modes_store_their_fields(world, labels):
    with client(world, labels, "ana") as http:
        shown = http.get("/api/next/correct").json()
        assert shown["candidates"][shown["prefill"]] == shown["caption"]
        response = http.post("/api/submit", json={"assignment": shown["assignment"], "shown": shown["shown"],
                                                  "choice": shown["prefill"], "corrected": "  A better caption. "})
        assert response.status_code == 200
        shown = http.get("/api/next/acceptable").json()
        base = {"assignment": shown["assignment"], "shown": shown["shown"]}
        assert http.post("/api/submit", json={**base, "choice": 0, "acceptable": [1]}).status_code == 422
        assert http.post("/api/submit", json={**base, "choice": -1, "acceptable": [1]}).status_code == 422
        assert http.post("/api/submit", json={**base, "choice": 1, "acceptable": [1, 1]}).status_code == 422
        assert http.post("/api/submit", json={**base, "choice": 1, "acceptable": [0, 1]}).status_code == 200
    rows = read_labels(labels)
    assert rows[0]["corrected"] == "A better caption." and rows[1]["acceptable"] == [0, 1]


def test_acceptable_labels_feed_the_teacher_study(world, labels):
    with client(world, labels, "ana") as http:
        for _ in range(6):
            shown = http.get("/api/next/acceptable").json()
            assert http.post("/api/submit", json={"assignment": shown["assignment"], "shown": shown["shown"],
                                                  "choice": 0, "acceptable": [0, 1]}).status_code == 200
    done = run_cli("teachers", "choose", "--labels", labels, "--k", "2", "--json")
    assert done.returncode == 0, done.stderr
    study = json.loads(done.stdout)
    marked = Counter(c["teacher"] for row in read_labels(labels) for c in row["candidates"][:2])
    assert study["clips"] == 6 and study["all_teachers"]["coverage"] == 1.0
    assert study["best_single"]["covered"] == max(marked.values())


def test_clip_orders(world, labels, tmp_path):
    rows = index_rows(world)
    with client(world, labels, "ana", order="low-score") as http:
        served = [answer(http)[0]["clip_id"] for _ in range(5)]
    scores = sorted(r["score"] for r in rows.values())
    assert [rows[c]["score"] for c in served] == scores[:5]
    other = str(tmp_path / "other.parquet")
    with client(world, other, "ana", order="disagreement") as http:
        strata = []
        for _ in range(9):
            shown, _ = answer(http)
            strata.append(shown["clip_id"])
        db = http.app.state.exporter.store.db
        served_strata = [r[0] for r in db.execute("SELECT stratum FROM assignments ORDER BY id")]
    assert sorted(served_strata) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # equal shares of low, mid, high disagreement


def test_opening_reads_no_clip_and_an_existing_labels_file_is_kept(world, tmp_path):
    import shutil

    labels = str(tmp_path / "labels.parquet")
    shutil.copyfile(world / "labels.parquet", labels)
    before = read_labels(labels)
    studio = open_studio(str(world), labels)
    db = studio.store.db
    assert db.execute("SELECT count(*) FROM clips").fetchone()[0] == 40
    assert db.execute("SELECT count(*) FROM clip_text").fetchone()[0] == 0  # no candidates read at start
    assert db.execute("SELECT count(*) FROM walked").fetchone()[0] == 0  # no shard opened
    with TestClient(create_app(studio), headers={"X-Annotator": "zed"}) as http:
        answer(http)
    after = read_labels(labels)
    assert len(after) == len(before) + 1 and after[:len(before)] == before


def test_captions_holding_html_render_as_text(world, tmp_path):
    rows = index_rows(world)
    clip_id = sorted(rows)[0]
    evil = "<script>alert('x')</script><b>bold</b>"
    version = [{"clip_id": c, "caption": evil if c == clip_id else None, "caption_teacher": "t", "score": 0.0 if c ==
                clip_id else 1.0, "selector": "test", "error_reason": None,
                "candidates": [{"teacher": "t", "modality": "text", "text": evil, "model_id": None,
                                "model_revision": None, "params": None, "score": None},
                               {"teacher": "u", "modality": "text", "text": "a plain caption", "model_id": None,
                                "model_revision": None, "params": None, "score": None}]}
               for c in sorted(rows)]
    write_version(str(world), "html-test", version, {"selector": "test"})
    labels = str(tmp_path / "labels.parquet")
    with client(world, labels, version="html-test", order="low-score") as http:
        http.cookies.set("vidcurate_annotator", "ana")
        page = http.get("/annotate/correct").text
    assert "<script>alert" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in page


def test_remote_listening_needs_the_flag_and_a_token(world, labels):
    with pytest.raises(ServeError, match="--allow-remote"):
        bind("0.0.0.0", 0, allow_remote=False, token=None)
    sock, token = bind("0.0.0.0", 0, allow_remote=True, token=None)
    sock.close()
    assert token and len(token) >= 20
    with client(world, labels, token="s3cret") as http:
        assert http.get("/api/progress").status_code == 401
        assert http.get("/api/progress", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/api/progress", headers={"Authorization": "Bearer wrong"}).status_code == 401
        first = http.get("/?token=s3cret")
        assert first.status_code == 200 and "vidcurate_token" in first.headers["set-cookie"]
        assert http.get("/api/progress").status_code == 200  # the cookie now carries it


def start_server(world, labels, *extra):
    server = subprocess.Popen([*VIDCURATE, "annotate", str(world), "--labels", labels, "--port", "0", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    for line in server.stdout:
        if line.startswith("annotation page: "):
            return server, line.split(": ", 1)[1].strip().rstrip("/")
        if time.time() > deadline:
            break
    server.kill()
    raise AssertionError(f"the server printed no URL: {server.stderr.read()}")


def test_the_cli_serves_the_page_and_writes_labels_on_ctrl_c(world, labels):
    server, base = start_server(world, labels, "--overlap", "2")
    try:
        page = httpx.get(base + "/")
        assert page.status_code == 200 and "Who is annotating?" in page.text
        # The name form, as a browser posts it: a cookie names the annotator from then on.
        browser = httpx.Client(base_url=base, follow_redirects=True)
        start = browser.post("/login", data={"annotator": "ana"})
        assert start.status_code == 200 and "Choose a task" in start.text, start.text[:300]
        refused = browser.post("/login", data={"annotator": "<b>"})
        assert refused.status_code == 422 and "not a usable annotator name" in refused.text
        http = httpx.Client(base_url=base, headers={"X-Annotator": "ana"})
        shown = http.get("/api/next/best").json()
        assert http.post("/api/submit", json={"assignment": shown["assignment"], "shown": shown["shown"],
                                               "choice": -1}).status_code == 200
        video = http.get(shown["video"], headers={"Range": "bytes=0-7"})
        assert video.status_code == 206 and video.content[4:8] == b"ftyp"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert [r["choice"] for r in read_labels(labels)] == [-1]


def test_cli_errors_name_the_input(world, tmp_path):
    done = run_cli("annotate", str(tmp_path), "--port", "0")
    assert done.returncode == 2 and "index.parquet is missing" in done.stderr
    done = run_cli("annotate", str(world), "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2 and "--allow-remote" in done.stderr
    done = run_cli("annotate", str(world), "--version", "nope", "--port", "0")
    assert done.returncode == 2 and "no caption version 'nope'" in done.stderr
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    done = run_cli("annotate", str(world), "--labels", str(broken), "--port", "0")
    assert done.returncode == 2 and str(broken) in done.stderr
    done = run_cli("annotate", "export", str(world), "--labels", str(tmp_path / "none.parquet"))
    assert done.returncode == 2 and "no annotation store" in done.stderr
