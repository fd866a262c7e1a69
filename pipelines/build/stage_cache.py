"""Reuse of earlier stages: run the decoding prefix of a pipeline once per source video.

``run.cache_after: extract_clips`` (the default) keeps, per source video, the records the
pipeline has after that step (clips with their mp4 bytes, keyframes and 16 kHz audio, or
the video's rejects) in ``OUT/_cache/<prefix hash>/<video_id>/part-NNNNN.pkl``, a batch
of clips per part, and ``done.json`` once all parts are written. The prefix hash
covers the resolved configuration of the steps up to and including that one, and the
vidcurate version. A later build whose pipeline starts with the same steps (a new
teacher, another selector, after ``--overwrite``, which keeps ``_cache/``) loads those
records instead of probing, splitting and cutting the video again; its models are not
even loaded when every video is cached. Videos with a transient reject are not cached,
so a retry really retries.

The cache costs about the size of the clips; set ``run.cache_after: null`` to disable it.

Parts are pickles, and unpickling runs code: each part is sealed with an HMAC-SHA256 under a
key that lives outside OUT (``~/.cache/vidcurate/stage-cache.key``, made on first use, mode
0600), and a part whose seal does not verify (written by someone else, copied from another
machine, tampered with) is never unpickled: the video is computed again
(``stage_cache.untrusted``). The key travels with this object to Ray's and Beam's workers.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import secrets
from typing import Iterable, Iterator

from vidcurate.operators.base import Operator, Resources, is_ok
from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import CACHE_DIR

NAME = "stage_cache"
DONE = "done.json"
SEAL = b"vidcurate-cache-1\n"  # then the 32-byte HMAC of the pickle, then the pickle
log = logging.getLogger(__name__)


class UntrustedPart(ValueError):
    """A cached part whose seal does not verify under this user's key."""


def cache_key() -> bytes:
    """This user's stage-cache key (``$XDG_CACHE_HOME`` or ``~/.cache``/vidcurate/stage-cache.key),
    made on first use; a random key of this process if it cannot be stored (nothing is then reused)."""
    folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vidcurate")
    path = os.path.join(folder, "stage-cache.key")
    try:
        with open(path, "rb") as handle:
            key = handle.read()
        if len(key) == 32:
            return key
    except OSError:
        pass
    key = secrets.token_bytes(32)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path + f".{os.getpid()}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        os.replace(path + f".{os.getpid()}.tmp", path)
        with open(path, "rb") as handle:  # another process may have won the race: use the stored key
            return handle.read()
    except OSError as exc:
        log.warning("cannot store the stage-cache key in %s (%s): cached clips will not be reused", path, exc)
        return key


def seal(records: list[dict], key: bytes) -> bytes:
    data = pickle.dumps(records, protocol=5)
    return SEAL + hmac.new(key, data, hashlib.sha256).digest() + data


def unseal(blob: bytes, key: bytes) -> list[dict]:
    """The records of a sealed part; UntrustedPart, before any unpickling, if the seal does not verify."""
    head = len(SEAL)
    if not blob.startswith(SEAL) or len(blob) < head + 32:
        raise UntrustedPart("no seal")
    mac, data = blob[head:head + 32], blob[head + 32:]
    if not hmac.compare_digest(mac, hmac.new(key, data, hashlib.sha256).digest()):
        raise UntrustedPart("the seal does not verify")
    return pickle.loads(data)


class CachedStages:
    """Duck-types the operator interface runners use, around a list of operators.

    The local runner calls ``stream`` (a video's records come out a batch at a time, and
    are stored and loaded a part at a time, so a long video is never held whole); the Ray
    runner calls the object (a list of sources in, all their records out)."""

    name = NAME

    def __init__(self, operators: list[Operator], dest: Destination, prefix_digest: str, key: bytes | None = None):
        self.operators = operators
        self.dest = dest
        self.key = key if key is not None else cache_key()
        self.folder = f"{CACHE_DIR}/{prefix_digest}"
        self._own = Stats()
        self._ready = False

    # ---- the operator interface ---------------------------------------------------------
    def declared_resources(self) -> Resources:
        return Resources(cpus=1, batch_size=1 << 30)  # a whole chunk at once: sources are few

    def ensure_setup(self) -> None:  # children are set up on the first cache miss only
        pass

    def close(self) -> None:
        if self._ready:
            for op in self.operators:
                op.close()
            self._ready = False

    def is_stateful(self) -> bool:  # Ray tasks (decoding scales with CPUs), unless it holds a GPU operator
        return any(op.declared_resources().gpus > 0 for op in self.operators)

    @property
    def stats(self) -> Stats:
        return Stats.total([self._own, *(op.stats for op in self.operators)])

    def __call__(self, sources: list[dict]) -> list[dict]:
        return [record for batch in self.stream([sources]) for record in batch]

    def stream(self, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
        """Every source video's records after the cached steps: loaded, or computed and stored."""
        for batch in batches:
            for source in batch:
                if not is_ok(source):
                    yield [source]
                    continue
                parts = self._parts(source)
                if parts is None:
                    self._own.incr(f"{NAME}.misses")
                    yield from self._compute(source, progress)
                    continue
                given: set = set()  # clip ids already handed on, should a later part be damaged
                try:
                    for part in parts:
                        records = self._load_part(part, source)
                        given.update(r.get("clip_id") for r in records)
                        yield records
                    self._own.incr(f"{NAME}.hits")
                except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
                    # A damaged or untrusted entry is recomputed, never trusted; clip ids are
                    # deterministic, so what earlier parts gave is not given twice.
                    if isinstance(exc, UntrustedPart):
                        self._own.incr(f"{NAME}.untrusted")
                        log.warning("%s: a cached part is not sealed by this user's key (%s): not loaded, "
                                    "computed again", source["uri"], exc)
                    else:
                        self._own.incr(f"{NAME}.unreadable")
                    for records in self._compute(source, progress):
                        yield [r for r in records if r.get("clip_id") not in given or r.get("clip_id") is None]

    # ---- computing and storing -----------------------------------------------------------
    def _compute(self, source: dict, progress=None) -> Iterator[list[dict]]:
        from vidcurate.pipelines.runners.base import stream_stages

        if not self._ready:
            for op in self.operators:
                op.ensure_setup()
            self._ready = True
        folder = self._video_folder(source)
        parts, cacheable = 0, True
        for records in stream_stages(self.operators, [[source]], progress):
            if not records:
                continue
            cacheable = cacheable and not any(not is_ok(r) and r.get("error_transient") for r in records)
            if cacheable:  # a video with a transient reject is not cached, so a retry really retries
                self.dest.makedirs(folder)
                self.dest.write_bytes(f"{folder}/part-{parts:05d}.pkl", seal(records, self.key))
                parts += 1
            yield records
        if cacheable:  # written last: a video is cached only once all its parts are
            self.dest.makedirs(folder)
            self.dest.write_bytes(f"{folder}/{DONE}", json.dumps({"uri": source["uri"], "parts": parts}).encode())

    def _video_folder(self, source: dict) -> str:
        return f"{self.folder}/{source['video_id']}"

    def _parts(self, source: dict) -> list[str] | None:
        """The part files of a complete cache entry for ``source``, or None."""
        folder = self._video_folder(source)
        try:
            done = json.loads(self.dest.read_bytes(f"{folder}/{DONE}"))
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry is recomputed, never trusted
            self._own.incr(f"{NAME}.unreadable")
            return None
        if done.get("uri") != source["uri"]:
            return None
        parts = [f"{folder}/part-{n:05d}.pkl" for n in range(int(done.get("parts", 0)))]
        if not all(self.dest.exists(p) for p in parts):
            self._own.incr(f"{NAME}.unreadable")
            return None
        return parts

    def _load_part(self, part: str, source: dict) -> list[dict]:
        records = unseal(self.dest.read_bytes(part), self.key)
        # The manifest's metadata may have changed (titles fixed): take it from the source.
        return [{**record, **source} if is_ok(record) else record for record in records]


def prefix_digest(resolved_pipeline: list[dict], version: str) -> str:
    data = json.dumps({"pipeline": resolved_pipeline, "vidcurate": version}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def split_at(operators: list[Operator], cache_after: str | None) -> int:
    """How many leading operators the cache covers (0: no cache)."""
    if not cache_after:
        return 0
    names = [op.name for op in operators]
    return len(names) - names[::-1].index(cache_after) if cache_after in names else 0
