"""Beam transforms that run vidcurate stages: no operator is implemented twice.

- :class:`StageDoFn` runs a CPU stage (an operator, the stage cache) on batches of records:
  ``setup()`` loads it once per DoFn instance, ``process`` streams one batch through it.
- Model stages go through RunInference (``model_handler.py``).
- :func:`route_rejects` splits a stage's output: ok records go on to the next stage, rejects
  leave as the ``rejects`` output straight to the commit step (later stages only pass them on).
- :class:`WriteSamplesDoFn` is the sample writer per bundle: shards are written on the worker
  that holds the clips and published at ``finish_bundle``, and only metadata goes on.
- :class:`CommitPartsDoFn` takes each video's metadata, gathered by a GroupByKey on its uri
  (a video's clips and its completion meet in one place), and publishes it, a file per
  bundle, in ``OUT/_journal/beam/<run>/``; the build's process journals those files once
  the pipeline is done (``runner.py``). Beam keeps the output of one successful attempt per
  bundle, so a retried bundle's shards are never referenced and the sink's repair removes them.

Each stage's counters and timers become Beam metrics (namespace ``vidcurate``; seconds as
integer microseconds in ``vidcurate.seconds``), which the runner reads back into Stats.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from vidcurate.operators.base import is_ok
from vidcurate.operators.stats import Stats
from vidcurate.operators.write import commit_files
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.sample_writer import reject_metadata

REJECTS = "rejects"
COUNTERS, SECONDS = "vidcurate", "vidcurate.seconds"


def report_stats(delta: Stats) -> None:
    """Add a stage's counters and timers since the last report to Beam's metrics."""
    for key, value in delta.counters.items():
        Metrics.counter(COUNTERS, key).inc(int(value))
    for key, seconds in delta.seconds.items():
        Metrics.counter(SECONDS, key).inc(int(round(seconds * 1e6)))


def stats_from_metrics(result) -> Stats:
    """The Stats a finished pipeline's counters describe."""
    stats = Stats()
    for counter in result.metrics().query(beam.metrics.MetricsFilter())["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        if not value:
            continue
        if counter.key.metric.namespace == COUNTERS:
            stats.incr(counter.key.metric.name, value)
        elif counter.key.metric.namespace == SECONDS:
            stats.add_time(counter.key.metric.name, value / 1e6)
    return stats


class _StatsReporter:
    """Reports what a stage's stats gained since the last report (one per DoFn instance)."""

    def __init__(self, stage):
        self.stage, self.reported = stage, stage.stats.copy()

    def report(self) -> None:
        now = self.stage.stats.copy()
        report_stats(now.since(self.reported))
        self.reported = now


class StageDoFn(beam.DoFn):
    """A batch of records (from BatchElements) through one stage."""

    def __init__(self, stage):
        self.stage = stage

    def setup(self):
        self.stage.ensure_setup()
        self._stats = _StatsReporter(self.stage)

    def process(self, batch):
        for records in self.stage.stream([list(batch)]):
            yield from records
        self._stats.report()

    def teardown(self):
        self.stage.close()


class _RouteRejects(beam.DoFn):
    def process(self, record):
        if is_ok(record):
            yield record
        else:
            yield beam.pvalue.TaggedOutput(REJECTS, reject_metadata(record))


def route_rejects(records, label: str):
    """(ok records, rejects as metadata) of a stage's output."""
    routed = records | label >> beam.ParDo(_RouteRejects()).with_outputs(REJECTS, main="ok")
    return routed.ok, routed[REJECTS]


class WriteSamplesDoFn(beam.DoFn):
    """The sample writer per bundle: records in, metadata out once the bundle's shards are published."""

    def __init__(self, writer):
        self.writer = writer.per_call()

    def setup(self):
        self.writer.ensure_setup()
        self._stats = _StatsReporter(self.writer)

    def process(self, batch):
        yield from self.writer.add(batch)  # rejects, and samples of shards already published

    def finish_bundle(self):
        # Every shard of the bundle is published before its last metadata leaves.
        for meta in self.writer.flush():
            yield WindowedValue(meta, GlobalWindow().max_timestamp(), [GlobalWindow()])
        self._stats.report()

    def teardown(self):
        self.writer.close()


class CommitPartsDoFn(beam.DoFn):
    """(uri, its metadata) pairs, published a file per bundle: one JSON line per video."""

    def __init__(self, root: str, folder: str):
        self.root, self.folder = root, folder

    def setup(self):
        self.dest = Destination(self.root)

    def start_bundle(self):
        self._lines: list[str] = []

    def process(self, grouped):
        uri, metas = grouped
        self._lines.append(commit_files.encode_video(uri, list(metas)))
        Metrics.counter(COUNTERS, "beam.videos_committed").inc()

    def finish_bundle(self):
        if self._lines:
            commit_files.publish(self.dest, self.folder, self._lines)
        self._lines = []

    def teardown(self):
        self.dest.close()
