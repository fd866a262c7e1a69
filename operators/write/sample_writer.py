"""Writing samples where the clips are: a worker turns records into published shards and
hands back only metadata.

:class:`SampleWriter` is the last stage of every build, run by the runner wherever the
clips are (a Ray task, a Beam DoFn, the local loop). It writes each ok record's sample
(mp4, json, txt, ...) to a shard of its split and bucket, publishes the shard whole
(``operators/write/shards.py``), and only then yields the record's **metadata**: a small
record with the sample's index row (``WRITTEN``) and the number of samples its shard holds,
or, for a reject, its reject row. The mp4 bytes never leave the worker; the coordinator
(``operators/write/sink.py``) journals what the metadata says.

Shard names carry a token drawn per writer instance (``<prefix>-<token>-<NNNNNN>.tar``),
so shards written by different workers, or by a retried attempt of the same work, never
collide. A retried attempt writes new shards; the coordinator keeps whichever attempt's
metadata it took, and shards no commit references are removed (the sink's repair).

Two ways to run it:
- per call (``flush_each_call=True``: Ray tasks, Beam bundles): every ``stream()`` call
  publishes all its shards before it ends, so nothing outlives the call (a Beam bundle
  calls ``add`` per batch and ``flush`` when it finishes);
- long-lived (the local loop, in-process writing): shards stay open across calls, fill up
  to their limits, and ``flush()`` publishes the rest at the end; ``holds(uri)`` says
  whether a video still has samples in an open shard (not yet reported).

Fault injection for the crash tests: with ``VIDCURATE_FAULT_AFTER_PUBLISH=FILE`` set, the
first writer to publish a shard while FILE does not exist creates FILE and kills its
process (exit 137) before it reports the shard: the "worker died after writing a shard,
before its commit" case.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from vidcurate.operators.base import Resources, is_ok
from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import SHARDS_DIR
from vidcurate.operators.write.partition import bucket_of, split_of
from vidcurate.operators.write.samples import index_row, reject_row, sample_members
from vidcurate.operators.write.shards import ShardWriter
from vidcurate.schemas.records import SOURCE, rejected

WRITTEN = "written"        # metadata of a sample: its index row
SHARD_SAMPLES = "shard_samples"  # ... and how many samples its shard holds
REJECT = "reject"          # metadata of a reject: its reject row
SOURCE_OF = "source"       # the video's source record, on the first metadata of a video per call
HELD = "held"              # {uri, HELD: True}: the video has samples waiting in an open shard (long-lived
                           # writer), told once as they start waiting: it is not failing, only not published
FAULT_ENV = "VIDCURATE_FAULT_AFTER_PUBLISH"


@dataclass
class SinkOptions:
    shard_prefix: str = "shard"
    shard_max_samples: int = 1000
    shard_max_bytes: int = 1 << 30
    open_shards: int = 4
    splits: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    bucket_by: tuple[str, ...] = ()
    seed: int = 0
    extra_members: tuple[str, ...] = ()


def reject_metadata(record: dict) -> dict:
    """The metadata of a reject (it has no sample): what the coordinator needs, nothing heavy."""
    meta = {k: record.get(k) for k in _META_FIELDS if k in record}
    meta[SOURCE_OF] = {k: record.get(k) for k in SOURCE.names if record.get(k) is not None}
    meta[REJECT] = reject_row(record)
    return meta


_META_FIELDS = ("uri", "video_id", "clip_id", "status", "error_stage", "error_reason", "error_detail",
                "error_transient")


class SampleWriter:
    """A stage (pipelines/runners/base.py): records in, metadata out, shards published in between."""

    name = "write_samples"

    def __init__(self, root: str, provenance: dict, options: SinkOptions, flush_each_call: bool = False):
        self.root, self.provenance, self.options = root, provenance, options
        self.flush_each_call = flush_each_call
        self.stats = Stats()
        self._dest: Destination | None = None
        self._writers: dict[str, ShardWriter] = {}
        self._token = ""
        self._held: dict[str, list[dict]] = {}      # open shard -> metadata waiting for its publication
        self._holding: dict[str, int] = {}          # uri -> samples in open shards
        self._keys: dict[str, str] = {}             # sample key -> uri, in this writer's open shards
        self._sent_source: set[str] = set()
        self._ready: list[dict] = []

    def per_call(self) -> "SampleWriter":
        """This writer in per-call mode (distributed runners: Ray tasks, Beam bundles)."""
        return SampleWriter(self.root, self.provenance, self.options, flush_each_call=True)

    def __getstate__(self) -> dict:  # what a runner ships to a worker: the config, never open files
        return {"root": self.root, "provenance": self.provenance, "options": self.options,
                "flush_each_call": self.flush_each_call}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    # ---- the stage interface -----------------------------------------------------------
    def declared_resources(self) -> Resources:
        return Resources(cpus=0.5)  # tar writing from memory: mostly I/O

    def is_stateful(self) -> bool:
        return False

    def ensure_setup(self) -> None:
        if self._dest is None:
            self._dest = Destination(self.root)

    def close(self) -> None:
        """Frees the destination; open shards (not flushed) are left staged: a resume removes them."""
        if self._dest is not None:
            self._dest.close()
            self._dest = None

    def stream(self, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
        """Metadata of the records of ``batches``, each once its sample's shard is published
        (rejects at once). Per call: every shard is published before the stream ends."""
        for batch in batches:
            yield self.add(batch)
        if self.flush_each_call:
            yield self.flush()

    def add(self, records: Iterable[dict]) -> list[dict]:
        """Write ``records``; the metadata settled now (rejects, samples of shards that filled up)."""
        self.ensure_setup()
        for record in records:
            self._write(record)
        return self._take_ready()

    def holds(self, uri: str) -> bool:
        """Whether samples of ``uri`` wait in an open shard (their metadata is not out yet)."""
        return self._holding.get(uri, 0) > 0

    def flush(self) -> list[dict]:
        """Publish every open shard; the metadata of everything written and not yet reported."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
        self._keys = {}
        self._sent_source = set()
        self._token = ""  # what is written next gets new shard names
        return self._take_ready()

    # ---- writing -----------------------------------------------------------------------
    def _write(self, record: dict) -> None:
        uri = record["uri"]
        self.stats.incr(f"{self.name}.records_in")
        if is_ok(record) and record["clip_id"] in self._keys:
            record = rejected(record, "write", "duplicate_clip_id",
                              f"{uri}: clip {record['clip_id']} is already in the dataset, written from "
                              f"{self._keys[record['clip_id']]}; sample keys must be unique (give each file its "
                              "own video_id)")
        if not is_ok(record):
            self._ready.append(self._metadata(record, {REJECT: reject_row(record)}))
            self.stats.incr(f"{self.name}.rejects")
            return
        self._keys[record["clip_id"]] = uri
        split = split_of(record["video_id"], self.options.splits, self.options.seed)
        writer = self._writer(split, bucket_of(record, self.options.bucket_by))
        clock = time.perf_counter()
        shard = writer.write(record["clip_id"], sample_members(record, {**self.provenance, "split": split},
                                                              self.options.extra_members))
        self.stats.add_time(f"{self.name}.process", time.perf_counter() - clock)
        row = index_row(record, shard[len(SHARDS_DIR) + 1:], split, writer.last_members)
        self._held.setdefault(shard, []).append(self._metadata(record, {WRITTEN: row}))
        if not self._holding.get(uri) and not self.flush_each_call:
            self._ready.append({"uri": uri, HELD: True})
        self._holding[uri] = self._holding.get(uri, 0) + 1
        self.stats.incr(f"{self.name}.samples")
        self.stats.incr(f"{self.name}.bytes", sum(size for _, size in writer.last_members.values()))

    def _metadata(self, record: dict, fields: dict) -> dict:
        meta = {k: record.get(k) for k in _META_FIELDS if k in record}
        if record["uri"] not in self._sent_source:
            self._sent_source.add(record["uri"])
            meta[SOURCE_OF] = {k: record.get(k) for k in SOURCE.names if record.get(k) is not None}
        return {**meta, **fields}

    def _writer(self, split: str, bucket: str) -> ShardWriter:
        subdir = f"{split}/{bucket}" if bucket else split
        if subdir not in self._writers:
            if not self._token:
                self._token = secrets.token_hex(6)
            self._writers[subdir] = ShardWriter(
                self._dest, f"{self.options.shard_prefix}-{self._token}", self.options.shard_max_samples,
                self.options.shard_max_bytes, open_shards=1 if self.flush_each_call else self.options.open_shards,
                subdir=f"{SHARDS_DIR}/{subdir}", on_finalized=self._published)
        return self._writers[subdir]

    def _published(self, name: str, samples: int) -> None:
        fault = os.environ.get(FAULT_ENV)
        if fault and not os.path.exists(fault):
            with open(fault, "w") as handle:
                handle.write(f"{name}\n")
            os._exit(137)
        for meta in self._held.pop(name, []):
            meta[SHARD_SAMPLES] = samples
            self._holding[meta["uri"]] -= 1
            if not self._holding[meta["uri"]]:
                del self._holding[meta["uri"]]
            self._keys.pop(meta[WRITTEN]["key"], None)  # the sink checks keys across shards
            self._ready.append(meta)
        self.stats.incr(f"{self.name}.shards")

    def _take_ready(self) -> list[dict]:
        ready, self._ready = self._ready, []
        return ready
