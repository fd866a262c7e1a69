"""What the annotation page does, apart from HTTP: which clip comes next, and storing what people answer.

Assignment. Each clip goes to up to ``overlap`` (K) annotators per mode, blind: nobody is shown
another's answer. Serving a clip to an annotator records an assignment with the candidates'
order, a fresh random permutation per clip and annotator (kept, so a reload shows the same
order and a submission against another order is refused as stale). ``coverage`` counts, per
clip and mode, the annotators holding or having finished it; a clip already started by others
is preferred over a fresh one, so clips reach K judgments one after another. A held assignment
is given back when it is skipped, or after ``lease_seconds`` without an answer.

Order of fresh clips (``order``):
  uniform       a seeded shuffle of every clip (catalog.shuffle_rank)
  low-score     lowest selector score first (the index's, or the version's, ``score``)
  disagreement  stratified by teacher disagreement (catalog.disagreement): the next 64 clips of
                the shuffle are read, split at the terciles of the disagreement seen so far, and
                the clip comes from the third served least often in this mode, so low-, mid- and
                high-disagreement clips are annotated in equal shares
"""
from __future__ import annotations

import json
import random
import time

from vidcurate.pipelines.annotate.catalog import Catalog
from vidcurate.pipelines.annotate.store import MODE_BITS, MODES, Store, utc_now

ORDERS = ("uniform", "low-score", "disagreement")
POOL = 64


class Refused(ValueError):
    """A request the studio refuses; ``status`` is the HTTP status it becomes (the message says why)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Studio:
    def __init__(self, store: Store, catalog: Catalog, order: str = "uniform", overlap: int = 1,
                 lease_seconds: float = 1800.0, seed: int = 0):
        if order not in ORDERS:
            raise ValueError(f"unknown clip order {order!r}; known: {', '.join(ORDERS)}")
        if overlap < 1:
            raise ValueError(f"overlap (annotators per clip) must be >= 1, got {overlap}")
        self.store, self.catalog, self.db = store, catalog, store.db
        self.order, self.overlap, self.lease_seconds, self.seed = order, overlap, lease_seconds, seed
        with store.lock:
            self.total = catalog.import_clips()

    # -- serving -------------------------------------------------------------------------
    def next_clip(self, annotator: str, mode: str) -> dict | None:
        """The assignment ``annotator`` should answer next in ``mode`` (None: nothing left for them)."""
        check_mode(mode)
        with self.store.lock:
            self._expire()
            held = self.db.execute("SELECT id FROM assignments WHERE annotator = ? AND mode = ? AND state = 'open' "
                                   "ORDER BY id DESC LIMIT 1", (annotator, mode)).fetchone()
            if held:
                return self.assignment(held[0])
            while True:
                clip_id, stratum = self._pick(annotator, mode)
                if clip_id is None:
                    return None
                candidates = self.catalog.texts(clip_id)["candidates"]
                if candidates:
                    break
                self._set_aside(clip_id)
            shown = list(range(len(candidates)))
            random.Random(f"{self.seed}:{clip_id}:{annotator}:{mode}:{time.time_ns()}").shuffle(shown)
            with self.store.transaction():
                cursor = self.db.execute(
                    "INSERT INTO assignments(clip_id, annotator, mode, shown, stratum, served_at, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'open')", (clip_id, annotator, mode, json.dumps(shown), stratum,
                                                          time.time()))
                self._cover(clip_id, mode, +1)
            return self.assignment(cursor.lastrowid)

    def assignment(self, assignment_id: int) -> dict:
        """An assignment as the page shows it: the clip, its candidates in the order shown, the caption."""
        row = self.db.execute("SELECT id, clip_id, annotator, mode, shown, state FROM assignments WHERE id = ?",
                              (assignment_id,)).fetchone()
        if row is None:
            raise Refused(404, f"no assignment {assignment_id}")
        texts = self.catalog.texts(row[1])
        shown = json.loads(row[4])
        candidates = [texts["candidates"][i] for i in shown]
        caption = texts["caption"]
        prefill = next((n for n, c in enumerate(candidates) if c["text"] == caption), 0 if candidates else -1)
        clip = self.catalog.clip(row[1])
        fps = clip["num_frames"] / clip["duration"] if clip["num_frames"] and clip["duration"] else None
        return {"assignment": row[0], "clip_id": row[1], "annotator": row[2], "mode": row[3], "shown": shown,
                "state": row[5], "candidates": [c["text"] for c in candidates], "teachers": [c["teacher"] for c in
                                                                                            candidates],
                "caption": caption, "prefill": prefill, "fps": fps}

    def _pick(self, annotator: str, mode: str) -> tuple[str | None, int | None]:
        # Clips this annotator holds, judged or skipped (one given back by undo or an expired lease is not).
        mine = "SELECT clip_id FROM assignments WHERE annotator = :who AND mode = :mode AND state != 'released' " \
               "UNION SELECT clip_id FROM judgments WHERE annotator = :who AND mode = :mode"
        args = {"who": annotator, "mode": mode, "k": self.overlap}
        started = self.db.execute(
            f"SELECT c.clip_id FROM coverage v JOIN clips c ON c.clip_id = v.clip_id WHERE v.mode = :mode AND "
            f"v.active > 0 AND v.active < :k AND v.clip_id NOT IN ({mine}) ORDER BY c.rank LIMIT 1", args).fetchone()
        if started:
            return started[0], None
        # The literal bit test matches the partial index of this mode's fresh clips (catalog.py).
        fresh = f"SELECT clip_id FROM clips WHERE (covered & {MODE_BITS[mode]}) = 0 AND clip_id NOT IN ({mine})"
        if self.order == "low-score":  # two queries, so each walks the (score, rank) index; unscored clips last
            found = self.db.execute(f"{fresh} AND score IS NOT NULL ORDER BY score, rank LIMIT 1", args).fetchone() \
                or self.db.execute(f"{fresh} AND score IS NULL ORDER BY rank LIMIT 1", args).fetchone()
            return (found[0] if found else None), None
        if self.order == "uniform":
            found = self.db.execute(f"{fresh} ORDER BY rank LIMIT 1", args).fetchone()
            return (found[0] if found else None), None
        pool = [r[0] for r in self.db.execute(f"{fresh} ORDER BY rank LIMIT {POOL}", args)]
        if not pool:
            return None, None
        spread = {clip_id: self.catalog.texts(clip_id)["disagreement"] for clip_id in pool}
        cuts = self._terciles()
        served = dict(self.db.execute("SELECT stratum, count(*) FROM assignments WHERE mode = ? AND stratum IS NOT "
                                      "NULL AND state != 'released' GROUP BY stratum", (mode,)).fetchall())
        strata = {clip_id: sum(value > cut for cut in cuts) for clip_id, value in spread.items()}
        for stratum in sorted(range(3), key=lambda s: (served.get(s, 0), s)):
            for clip_id in pool:
                if strata[clip_id] == stratum:
                    return clip_id, stratum
        return pool[0], strata[pool[0]]  # unreachable: every pool clip is in one of the three strata

    def _set_aside(self, clip_id: str) -> None:
        """A clip without candidates has nothing to judge: count it as covered in every mode."""
        with self.store.transaction():
            for mode in MODES:
                self.db.execute("INSERT OR REPLACE INTO coverage(clip_id, mode, active) VALUES (?, ?, ?)",
                                (clip_id, mode, self.overlap))
            self.db.execute("UPDATE clips SET covered = ? WHERE clip_id = ?", (sum(MODE_BITS.values()), clip_id))

    def _terciles(self) -> tuple[float, float]:
        """The disagreement values a third and two thirds of the way up, over the clips read so far
        (two steps along the index, not a sort of them all per request)."""
        count = self.db.execute("SELECT count(*) FROM clip_text").fetchone()[0]
        if not count:
            return (1 / 3, 2 / 3)
        at = "SELECT disagreement FROM clip_text ORDER BY disagreement LIMIT 1 OFFSET ?"
        return self.db.execute(at, (count // 3,)).fetchone()[0], self.db.execute(at, ((2 * count) // 3,)).fetchone()[0]

    def _cover(self, clip_id: str, mode: str, change: int) -> None:
        self.db.execute("INSERT INTO coverage(clip_id, mode, active) VALUES (?, ?, ?) ON CONFLICT(clip_id, mode) "
                        "DO UPDATE SET active = max(0, active + ?)", (clip_id, mode, max(change, 0), change))
        bit = MODE_BITS[mode]
        self.db.execute("UPDATE clips SET covered = CASE WHEN (SELECT active FROM coverage WHERE clip_id = ? AND "
                        "mode = ?) > 0 THEN covered | ? ELSE covered & ~? END WHERE clip_id = ?",
                        (clip_id, mode, bit, bit, clip_id))

    def _expire(self) -> None:
        stale = self.db.execute("SELECT id, clip_id, mode FROM assignments WHERE state = 'open' AND served_at < ?",
                                (time.time() - self.lease_seconds,)).fetchall()
        if stale:
            with self.store.transaction():
                for assignment_id, clip_id, mode in stale:
                    self.db.execute("UPDATE assignments SET state = 'released' WHERE id = ?", (assignment_id,))
                    self._cover(clip_id, mode, -1)

    # -- answers -------------------------------------------------------------------------
    def submit(self, annotator: str, answer: dict) -> dict:
        """Store one answer: ``{assignment, shown, choice, acceptable?, corrected?, seconds?, submission_id?}``.

        Validated against the held assignment first; a refused answer stores nothing. A repeated
        ``submission_id`` (a client retrying) returns the first result and stores nothing new."""
        with self.store.lock:
            sid = answer.get("submission_id")
            if sid is not None:
                done = self.db.execute("SELECT id, clip_id FROM judgments WHERE submission_id = ?", (sid,)).fetchone()
                if done:
                    return {"stored": done[0], "clip_id": done[1], "repeated": True}
            held = self._held(annotator, answer.get("assignment"))
            row = validate_answer(held, answer)
            with self.store.transaction():
                cursor = self.db.execute(
                    "INSERT INTO judgments(assignment_id, clip_id, annotator, mode, candidates, choice, acceptable, "
                    "corrected, seconds, created_at, submission_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (held["assignment"], held["clip_id"], annotator, held["mode"], json.dumps(row["candidates"]),
                     row["choice"], None if row["acceptable"] is None else json.dumps(row["acceptable"]),
                     row["corrected"], row["seconds"], utc_now().isoformat(), sid))
                self.db.execute("UPDATE assignments SET state = 'done' WHERE id = ?", (held["assignment"],))
            return {"stored": cursor.lastrowid, "clip_id": held["clip_id"], "repeated": False}

    def _held(self, annotator: str, assignment_id) -> dict:
        if isinstance(assignment_id, bool) or not isinstance(assignment_id, int):
            raise Refused(422, f"'assignment' must be the id of the clip you were shown, got {assignment_id!r}")
        held = self.assignment(assignment_id)
        if held["annotator"] != annotator:
            raise Refused(403, f"assignment {assignment_id} was given to {held['annotator']!r}, not {annotator!r}")
        if held["state"] != "open":
            raise Refused(409, f"assignment {assignment_id} (clip {held['clip_id']}) is {held['state']}: "
                               "reload the page for your next clip")
        return held

    def skip(self, annotator: str, assignment_id) -> dict:
        """Give a clip back without answering: others may get it, this annotator will not again."""
        with self.store.lock:
            held = self._held(annotator, assignment_id)
            with self.store.transaction():
                self.db.execute("UPDATE assignments SET state = 'skipped' WHERE id = ?", (held["assignment"],))
                self._cover(held["clip_id"], held["mode"], -1)
            return {"skipped": held["clip_id"]}

    def undo(self, annotator: str) -> dict:
        """Take back ``annotator``'s newest submission: its clip is served to them again, in the same order."""
        with self.store.lock:
            last = self.db.execute("SELECT id, assignment_id, clip_id, mode FROM judgments WHERE annotator = ? AND "
                                   "assignment_id IS NOT NULL ORDER BY id DESC LIMIT 1", (annotator,)).fetchone()
            if last is None:
                raise Refused(409, f"{annotator!r} has no submission to undo")
            judgment_id, assignment_id, clip_id, mode = last
            with self.store.transaction():
                for other, other_clip in self.db.execute(
                        "SELECT id, clip_id FROM assignments WHERE annotator = ? AND mode = ? AND state = 'open'",
                        (annotator, mode)).fetchall():
                    self.db.execute("UPDATE assignments SET state = 'released' WHERE id = ?", (other,))
                    self._cover(other_clip, mode, -1)
                self.db.execute("DELETE FROM judgments WHERE id = ?", (judgment_id,))
                self.db.execute("UPDATE assignments SET state = 'open', served_at = ? WHERE id = ?",
                                (time.time(), assignment_id))
            return {"undone": clip_id, "mode": mode, "assignment": assignment_id}

    def progress(self) -> dict:
        """Clips, and per mode the clips with K judgments (done) and the judgments; per-annotator counts."""
        with self.store.lock:
            full = dict(self.db.execute(
                "SELECT mode, count(*) FROM (SELECT clip_id, mode FROM judgments GROUP BY clip_id, mode HAVING "
                "count(*) >= ?) GROUP BY mode", (self.overlap,)).fetchall())
            counts = self.store.counts()
        return {"clips": self.total, "overlap": self.overlap, "order": self.order,
                "done": {m: full.get(m, 0) for m in MODES}, **counts}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise Refused(404, f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


def validate_answer(held: dict, answer: dict) -> dict:
    """The LABELS fields of an answer to ``held``, or Refused(4xx) saying what is wrong with it."""
    count = len(held["candidates"])
    if answer.get("shown") != held["shown"]:
        raise Refused(409, f"stale candidate order for clip {held['clip_id']}: the page showed "
                           f"{answer.get('shown')!r}, the assignment holds {held['shown']!r}; reload the page")
    choice = answer.get("choice")
    if isinstance(choice, bool) or not isinstance(choice, int) or not -1 <= choice < count:
        raise Refused(422, f"choice {choice!r} is not -1 (all bad) or a candidate number 0..{count - 1}")
    acceptable = answer.get("acceptable")
    if held["mode"] == "acceptable":
        if not isinstance(acceptable, list) or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count
                                                   for i in acceptable) or len(set(acceptable)) != len(acceptable):
            raise Refused(422, f"acceptable must list distinct candidate numbers 0..{count - 1}, got {acceptable!r}")
        if (choice == -1) != (not acceptable) or (choice >= 0 and choice not in acceptable):
            raise Refused(422, "the best caption must be one of the acceptable ones (and none acceptable means "
                               "choice -1)")
    elif acceptable is not None:
        raise Refused(422, f"acceptable candidates are asked only in acceptable mode, not {held['mode']}")
    corrected = answer.get("corrected")
    if held["mode"] == "correct":
        if not isinstance(corrected, str) or not corrected.strip():
            raise Refused(422, "correction mode needs the corrected caption (a non-empty text)")
        if len(corrected) > 10_000:
            raise Refused(422, f"the corrected caption is {len(corrected)} characters; at most 10000")
        corrected = corrected.strip()
    elif corrected is not None:
        raise Refused(422, f"a corrected caption is taken only in correction mode, not {held['mode']}")
    seconds = answer.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or
                                not 0 <= seconds < 86_400):
        raise Refused(422, f"seconds must be a number of seconds spent (0..86400), got {seconds!r}")
    return {"candidates": [{"teacher": t, "text": x} for t, x in zip(held["teachers"], held["candidates"])],
            "choice": choice, "acceptable": acceptable if held["mode"] == "acceptable" else None,
            "corrected": corrected, "seconds": None if seconds is None else float(seconds)}
