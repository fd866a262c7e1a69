"""`vidcurate bench annotate`: the annotation server under load, and every submission stored exactly once.

A synthetic world (``vidcurate synth``, or ``world`` reused) is served by ``vidcurate annotate``
in its own process: the real uvicorn server on a real localhost TCP socket (port 0, the port
read from the URL it prints), with a fresh, empty labels file (not the world's labels.parquet).
``annotators`` threads, each with its own HTTP client and annotator name, then loop until the
deadline, in best mode:

    GET  /api/next/best    timed; ``done`` ends that annotator
    POST /api/submit       a random candidate, a fresh submission id; timed

A submission is acknowledged by a 200 answer that is not a repeat (or, after a lost
connection, by the retry with the same submission id). Every 50th acknowledged submission of
an annotator (``resubmit_every``) is posted again with the same id and must be answered as a
repeat of the first.

After the deadline the server is stopped with SIGINT (it rewrites the labels parquet on the
way out). Then, read straight out of the SQLite store: one judgment per acknowledged
submission (as many, the same submission ids, each the row the answer named), no clip judged
twice by one annotator, no clip with more than ``overlap`` judgments; and the labels parquet
holds as many rows as the store. Latencies are measured in the clients (wall time of one
request, the clients' own threads included).
"""
from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np

URL = re.compile(r"annotation page: (http://\S+?:\d+/)")
RESUBMIT_EVERY = 50
START_TIMEOUT, STOP_TIMEOUT = 300.0, 120.0


def run(clips: int = 3000, annotators: int = 8, seconds: float = 60.0, overlap: int = 3, world: str | None = None,
        keep: str | None = None, seed: int = 0, resubmit_every: int = RESUBMIT_EVERY, echo=print) -> dict:
    """The load test; a summary (figures and the exactly-once checks, ``ok`` among them)."""
    from vidcurate.pipelines.annotate.store import store_path

    if annotators < 1 or seconds <= 0 or overlap < 1:
        raise ValueError(f"need annotators >= 1, seconds > 0 and overlap >= 1 (got {annotators}, {seconds}, "
                         f"{overlap})")
    workdir = os.path.abspath(keep) if keep else tempfile.mkdtemp(prefix="vidcurate-bench-annotate-")
    os.makedirs(workdir, exist_ok=True)
    try:
        if world is None:
            world = os.path.join(workdir, f"world-{clips}-{seed}")
            if not os.path.isfile(os.path.join(world, "index.parquet")):
                from vidcurate.pipelines.synth.write import SynthOptions, synthesize

                echo(f"synthesizing {clips} clips (seed {seed}) in {world}")
                started = time.perf_counter()
                synthesize(world, SynthOptions(clips=clips, seed=seed), overwrite=True, report=False)
                echo(f"synthesized in {time.perf_counter() - started:.0f} s")
        world = os.path.abspath(world)
        labels = os.path.join(tempfile.mkdtemp(prefix="labels-", dir=workdir), "labels.parquet")
        server = Server(world, labels, overlap, os.path.join(workdir, "server.log"))
        try:
            server.start()
            echo(f"serving {server.clips} clips at {server.url} (overlap {overlap}); {annotators} annotators for "
                 f"{seconds:g} s")
            load = drive(server.url, annotators, seconds, seed, resubmit_every)
        finally:
            stopped = server.stop()
        checks = check_store(store_path(labels), labels, load["acknowledged"], overlap)
        checks["server_stopped"] = stopped
        checks["ok"] = checks["ok"] and stopped["clean"]
        summary = {"world": world, "clips": server.clips, "annotators": annotators, "seconds": seconds,
                   "overlap": overlap, "wall_seconds": load["wall_seconds"], "submissions": len(load["acknowledged"]),
                   "submissions_per_s": len(load["acknowledged"]) / load["wall_seconds"],
                   "next_requests": len(load["next_ms"]), "done_annotators": load["done_annotators"],
                   "latency_ms": {"next": spread(load["next_ms"]), "submit": spread(load["submit_ms"])},
                   "resubmits": load["resubmits"], "resubmit_failures": load["resubmit_failures"][:10],
                   "errors": len(load["errors"]), "first_errors": load["errors"][:10], "checks": checks,
                   "ok": checks["ok"] and not load["resubmit_failures"]}
        if keep:
            with open(os.path.join(workdir, "bench_annotate.json"), "w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=2)
        return summary
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


class Server:
    """``vidcurate annotate WORLD --port 0`` in a child process; its URL read from what it prints."""

    def __init__(self, world: str, labels: str, overlap: int, log: str):
        self.command = [sys.executable, "-m", "vidcurate.pipelines.cli", "annotate", world, "--port", "0",
                        "--overlap", str(overlap), "--labels", labels]
        self.log, self.process, self.url, self.clips = log, None, None, None
        self.lines: queue.Queue = queue.Queue()
        self.printed: list[str] = []

    def start(self) -> None:
        self._stderr = open(self.log, "w", encoding="utf-8")
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while self.url is None:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(f"the annotation server printed no URL within {START_TIMEOUT:.0f} s "
                                   f"(log: {self.log})") from None
            if line is None:
                raise RuntimeError(f"the annotation server exited ({self.process.wait()}) before serving: "
                                   f"{self._log_tail()}")
            self.printed.append(line.rstrip())
            found = re.search(r": (\d+) clips \(", line)
            if found:
                self.clips = int(found.group(1))
            found = URL.search(line)
            if found:
                self.url = found.group(1)

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def stop(self) -> dict:
        """SIGINT, and wait: {returncode, seconds, clean} (clean: it stopped by itself, without an error)."""
        if self.process is None:
            return {"returncode": None, "seconds": 0.0, "clean": False}
        started, forced = time.perf_counter(), False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                forced = True
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        code = self.process.returncode
        # uvicorn re-raises the SIGINT it handled once it has shut down, and click turns that KeyboardInterrupt
        # into "Aborted!" and exit 1: that, 0, 130 or -SIGINT are a clean stop
        log = self._log_tail(100_000)
        clean = not forced and "Traceback" not in log and (code in (0, 130, -signal.SIGINT) or
                                                          (code == 1 and log.strip().endswith("Aborted!")))
        return {"returncode": code, "seconds": time.perf_counter() - started, "clean": clean,
                **({} if clean else {"log_tail": self._log_tail()})}

    def _log_tail(self, size: int = 2000) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-size:]
        except OSError:
            return ""


def drive(url: str, annotators: int, seconds: float, seed: int, resubmit_every: int = RESUBMIT_EVERY) -> dict:
    """``annotators`` client threads against ``url`` for ``seconds``; their timings and acknowledgements."""
    barrier = threading.Barrier(annotators + 1)
    results: list[dict] = [{} for _ in range(annotators)]
    box = {"deadline": None}
    threads = [threading.Thread(target=_annotate, daemon=True,
                                args=(url, f"bench-annotator-{n + 1}", seed * 1000 + n, barrier, box, resubmit_every,
                                      results[n])) for n in range(annotators)]
    for thread in threads:
        thread.start()
    box["deadline"] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    merged = {"next_ms": [], "submit_ms": [], "acknowledged": {}, "errors": [], "resubmits": 0,
              "resubmit_failures": [], "done_annotators": 0, "wall_seconds": wall}
    for found in results:
        if "crashed" in found:
            merged["errors"].append(found["crashed"])
        for key in ("next_ms", "submit_ms", "errors", "resubmit_failures"):
            merged[key] += found.get(key, [])
        merged["acknowledged"].update(found.get("acknowledged", {}))
        merged["resubmits"] += found.get("resubmits", 0)
        merged["done_annotators"] += bool(found.get("done"))
    return merged


def _annotate(url: str, name: str, seed: int, barrier: threading.Barrier, box: dict, resubmit_every: int,
              out: dict) -> None:
    import httpx

    rng = random.Random(seed)
    out.update(next_ms=[], submit_ms=[], acknowledged={}, errors=[], resubmits=0, resubmit_failures=[], done=False)
    try:
        with httpx.Client(base_url=url, headers={"X-Annotator": name}, timeout=60.0) as client:
            barrier.wait()
            while time.perf_counter() < box["deadline"]:
                tick = time.perf_counter()
                try:
                    found = client.get("/api/next/best")
                except httpx.TransportError as exc:
                    out["errors"].append(f"{name} next: {type(exc).__name__}: {exc}")
                    continue
                out["next_ms"].append(1000 * (time.perf_counter() - tick))
                if found.status_code != 200:
                    out["errors"].append(f"{name} next: {found.status_code} {found.text[:200]}")
                    continue
                held = found.json()
                if held.get("done"):
                    out["done"] = True
                    break
                answer = {"assignment": held["assignment"], "shown": held["shown"],
                          "choice": rng.randrange(len(held["candidates"])), "submission_id": str(uuid.uuid4()),
                          "seconds": round(rng.uniform(2.0, 40.0), 1)}
                stored = _submit(client, name, answer, out)
                if stored is None:
                    continue
                out["acknowledged"][answer["submission_id"]] = (stored["stored"], stored["clip_id"], name)
                if len(out["acknowledged"]) % resubmit_every == 0:
                    _resubmit(client, name, answer, stored, out)
    except Exception as exc:  # reported with the figures; the thread's figures so far are kept
        out["crashed"] = f"{name}: {type(exc).__name__}: {exc}"


def _submit(client, name: str, answer: dict, out: dict) -> dict | None:
    """POST the answer (again, with the same id, after a lost connection); the stored answer, or None."""
    import httpx

    for attempt in range(3):
        tick = time.perf_counter()
        try:
            done = client.post("/api/submit", json=answer)
        except httpx.TransportError as exc:
            out["errors"].append(f"{name} submit (attempt {attempt + 1}): {type(exc).__name__}: {exc}")
            continue
        out["submit_ms"].append(1000 * (time.perf_counter() - tick))
        if done.status_code != 200:
            out["errors"].append(f"{name} submit: {done.status_code} {done.text[:200]}")
            return None
        stored = done.json()
        if stored.get("repeated") and attempt == 0:
            out["errors"].append(f"{name} submit: a fresh submission id was answered as a repeat: {stored}")
            return None
        return stored
    return None


def _resubmit(client, name: str, answer: dict, stored: dict, out: dict) -> None:
    import httpx

    out["resubmits"] += 1
    try:
        again = client.post("/api/submit", json=answer)
    except httpx.TransportError as exc:
        out["resubmit_failures"].append(f"{name}: {type(exc).__name__}: {exc}")
        return
    body = again.json() if again.headers.get("content-type", "").startswith("application/json") else again.text
    if again.status_code != 200 or body != {**stored, "repeated": True}:
        out["resubmit_failures"].append(f"{name}: {again.status_code} {body!r} (first answer {stored})")


def check_store(db_path: str, labels_path: str, acknowledged: dict, overlap: int) -> dict:
    """The exactly-once checks of the stopped server's store against the acknowledged submissions."""
    from vidcurate.schemas.labels import read_labels

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, submission_id, clip_id, annotator, mode FROM judgments").fetchall()
    finally:
        db.close()
    ids = [r[1] for r in rows]
    by_id = {r[1]: (r[0], r[2], r[3]) for r in rows}
    pairs, per_clip = {}, {}
    for _, _, clip_id, annotator, mode in rows:
        pairs[(clip_id, annotator, mode)] = pairs.get((clip_id, annotator, mode), 0) + 1
        per_clip[(clip_id, mode)] = per_clip.get((clip_id, mode), 0) + 1
    try:
        label_rows = len(read_labels(labels_path))
    except Exception as exc:  # noqa: BLE001 - a labels file that cannot be read fails the check, with why
        label_rows = f"unreadable: {exc}"
    checks = {
        "judgments": len(rows), "acknowledged": len(acknowledged),
        "count_equal": len(rows) == len(acknowledged),
        "ids_unique": None not in ids and len(set(ids)) == len(ids),
        "ids_equal": set(ids) == set(acknowledged),
        "rows_as_answered": sum(by_id.get(sid) != want for sid, want in acknowledged.items()),
        "pairs_twice": sum(n > 1 for n in pairs.values()),
        "clips_over_k": sum(n > overlap for n in per_clip.values()),
        "clips_at_k": sum(n == overlap for n in per_clip.values()),
        "clips_judged": len(per_clip),
        "labels_rows": label_rows,
    }
    checks["ok"] = bool(checks["count_equal"] and checks["ids_unique"] and checks["ids_equal"] and
                        checks["rows_as_answered"] == 0 and checks["pairs_twice"] == 0 and
                        checks["clips_over_k"] == 0 and label_rows == len(rows))
    return checks


def spread(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    found = np.asarray(values)
    return {"count": len(values), "p50": float(np.percentile(found, 50)), "p95": float(np.percentile(found, 95)),
            "max": float(found.max())}


def report(s: dict) -> str:
    c, lat = s["checks"], s["latency_ms"]
    mark = lambda ok: "ok" if ok else "FAILED"  # noqa: E731
    lines = [f"annotation server under load: {s['annotators']} simulated annotators for {s['seconds']:g} s, best mode, "
             f"overlap K={s['overlap']}, against `vidcurate annotate` (uvicorn, its own process, localhost TCP) on "
             f"a {s['clips']}-clip synthetic world",
             f"  submissions stored     {s['submissions']:>8}   {s['submissions_per_s']:8.1f} /s over "
             f"{s['wall_seconds']:.1f} s",
             f"  next-clip requests     {s['next_requests']:>8}   annotators out of clips: {s['done_annotators']}; "
             f"errors: {s['errors']}",
             f"  latency (ms)              {'p50':>8} {'p95':>8} {'max':>8}"]
    for label, key in (("GET  /api/next/best", "next"), ("POST /api/submit", "submit")):
        row = lat[key]
        lines.append(f"    {label:<22} {row['p50']:8.1f} {row['p95']:8.1f} {row['max']:8.1f}   ({row['count']} "
                     "requests)")
    lines += ["  exactly once:",
              f"    [{mark(c['count_equal'])}] {c['judgments']} judgments in the store for {c['acknowledged']} "
              "acknowledged submissions",
              f"    [{mark(c['ids_unique'] and c['ids_equal'])}] submission ids unique and the acknowledged set "
              f"(unique: {c['ids_unique']}, equal: {c['ids_equal']})",
              f"    [{mark(c['rows_as_answered'] == 0)}] each stored row is the one its answer named (clip, annotator, "
              f"row id): {c['rows_as_answered']} differ",
              f"    [{mark(c['pairs_twice'] == 0)}] no clip judged twice by one annotator: {c['pairs_twice']} pairs "
              "twice",
              f"    [{mark(c['clips_over_k'] == 0)}] no clip over K={s['overlap']} judgments: {c['clips_over_k']} over "
              f"({c['clips_judged']} clips judged, {c['clips_at_k']} at K)",
              f"    [{mark(c['labels_rows'] == c['judgments'])}] labels parquet rewritten on stop: {c['labels_rows']} "
              "rows",
              f"    [{mark(not s['resubmit_failures'])}] {s['resubmits']} re-posted submissions answered as repeats"
              + (f"; {len(s['resubmit_failures'])} not: {s['resubmit_failures'][0]}" if s["resubmit_failures"] else ""),
              f"    [{mark(c['server_stopped']['clean'])}] server stopped on SIGINT in "
              f"{c['server_stopped']['seconds']:.1f} s (exit {c['server_stopped']['returncode']})"]
    if s["first_errors"]:
        lines.append("  first errors: " + "; ".join(s["first_errors"][:3]))
    if not c["server_stopped"]["clean"] and c["server_stopped"].get("log_tail"):
        lines.append("  server log tail: " + c["server_stopped"]["log_tail"][-800:])
    lines.append(f"  exactly-once check: {'passed' if s['ok'] else 'FAILED'}")
    return "\n".join(lines)
