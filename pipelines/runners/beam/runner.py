"""The Beam runner: the build as an Apache Beam pipeline (FnApiRunner here; Flink, Spark or
Dataflow on a cluster, chosen by Beam's own flags).

    vidcurate build -i VIDEOS -o OUT --runner beam -- --runner=FlinkRunner --flink_master=host:8081

Flags after ``--`` are Beam PipelineOptions (``run.beam_options`` in a config); without
``--runner=`` the pipeline runs on Beam's FnApiRunner in this process (add
``--direct_num_workers=2 --direct_running_mode=multi_processing`` for worker processes).

The pipeline, one transform per stage, labelled by step number and operator name::

    sources | Reshuffle                      the videos spread over workers
      | NN_<cpu stage>      BatchElements + ParDo(StageDoFn)      (transforms.py)
      | NN_<model stage>    RunInference(OperatorModelHandler)    (model_handler.py)
      |   each stage's rejects leave at once (tagged output), flattened into the commit
      | write_samples       BatchElements + ParDo(WriteSamplesDoFn): shards written on the
      |                     workers, published per bundle; metadata only from here on
      | commit              GroupByKey(uri) -> ParDo(CommitPartsDoFn): a file per bundle

While the pipeline runs, this process reads each new commit file (polled every
``POLL_SECONDS``, and once more when the pipeline is done) and hands each video's metadata
to ``emit``: the build's sink journals it, so videos are committed as the pipeline finishes
them and this process never holds the dataset. A commit file is published whole after the
shards it names, so the commit files of a run that died are whole videos too: the sink
journals them when the next build opens OUT (operators/write/commit_files.py), and those
videos are done.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import ClassVar, Iterable

from vidcurate.operators.stats import Stats
from vidcurate.operators.write import commit_files
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import BEAM_COMMITS_DIR
from vidcurate.pipelines.runners.base import Emit

log = logging.getLogger(__name__)

DEFAULT_BEAM_RUNNER = "FnApiRunner"
POLL_SECONDS = 2.0


class BeamRunner:
    draws_progress: ClassVar[bool] = False

    def __init__(self, stages: list, beam_options: Iterable[str] = (), writer=None, progress=None):
        self.stages = stages
        self.beam_options = list(beam_options)
        self.writer = writer
        self.progress = progress
        self._stats = Stats()

    @classmethod
    def from_config(cls, stages: list, run, progress=None, writer=None) -> "BeamRunner":
        return cls(stages, run.beam_options, writer, progress)

    def pipeline_options(self):
        from apache_beam.options.pipeline_options import PipelineOptions

        flags = list(self.beam_options)
        if not any(flag == "--runner" or flag.startswith("--runner=") for flag in flags):
            flags.append(f"--runner={DEFAULT_BEAM_RUNNER}")
        return PipelineOptions(flags)

    def run(self, sources: Iterable[dict], emit: Emit) -> Stats:
        if self.writer is None:
            raise ValueError("the Beam runner writes samples on its workers: it needs the build's sample writer")
        sources = list(sources)
        if not sources:
            return self.stats()
        dest = Destination(self.writer.root)
        folder = f"{BEAM_COMMITS_DIR}/{uuid.uuid4().hex[:12]}"
        seen: set[str] = set()
        stop = threading.Event()
        failed: list[BaseException] = []
        poller = threading.Thread(target=self._poll, args=(dest, folder, emit, seen, stop, failed), daemon=True)
        clock = time.perf_counter()
        poller.start()
        try:
            result = self._pipeline(sources, folder).run()
            result.wait_until_finish()
        finally:
            stop.set()
            poller.join()
        if failed:  # emit refused (the failure budget stopped the build): the rest is not journaled
            raise failed[0]
        self._stats.add_time("beam.execute", time.perf_counter() - clock)
        from vidcurate.pipelines.runners.beam.transforms import stats_from_metrics

        self._stats.merge(stats_from_metrics(result))
        self._journal_commits(dest, folder, emit, seen)  # what the last poll did not see
        dest.remove(BEAM_COMMITS_DIR)
        dest.close()
        return self.stats()

    def _poll(self, dest: Destination, folder: str, emit: Emit, seen: set[str], stop: threading.Event,
              failed: list[BaseException]) -> None:
        """Journal commit files as they appear, until ``stop`` (the only caller of ``emit`` meanwhile);
        an error ends the polling and is kept in ``failed`` for the caller to raise."""
        try:
            while not stop.wait(POLL_SECONDS):
                self._journal_commits(dest, folder, emit, seen)
        except BaseException as exc:  # noqa: BLE001  (re-raised by run())
            failed.append(exc)

    def _journal_commits(self, dest: Destination, folder: str, emit: Emit, seen: set[str]) -> None:
        """Hand the videos of the commit files in ``folder`` not in ``seen`` to ``emit``, a file at a time."""
        for uri, metas, size in commit_files.read(dest, folder, seen):
            self._stats.incr("beam.driver_bytes", size)
            emit(metas, [uri])
            if self.progress is not None:
                self.progress.videos_done(1)

    def _pipeline(self, sources: list[dict], folder: str):
        import apache_beam as beam
        from apache_beam.ml.inference.base import RunInference

        from vidcurate.pipelines.runners.beam.model_handler import OperatorModelHandler
        from vidcurate.pipelines.runners.beam.transforms import (CommitPartsDoFn, StageDoFn, WriteSamplesDoFn,
                                                                 route_rejects)

        pipeline = beam.Pipeline(options=self.pipeline_options())
        records = (pipeline | "sources" >> beam.Create(sources, reshuffle=False)
                   | "spread" >> beam.Reshuffle())
        rejects = []
        for number, stage in enumerate(self.stages, start=1):
            label = f"{number:02d}_{stage.name}"
            size = stage.declared_resources().batch_size
            if stage.is_stateful():  # loads a model: RunInference, one model per process
                records = records | label >> RunInference(OperatorModelHandler(stage))
            else:
                records = (records | f"{label}/batch" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
                           | label >> beam.ParDo(StageDoFn(stage)))
            records, stage_rejects = route_rejects(records, f"{label}/rejects")
            rejects.append(stage_rejects)
        writer = self.writer
        size = max(1, min(64, writer.options.shard_max_samples))
        metas = (records | "write_samples/batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=size)
                 | "write_samples" >> beam.ParDo(WriteSamplesDoFn(writer)))
        ((metas, *rejects) | "commit/metadata" >> beam.Flatten()
         | "commit/by_video" >> beam.Map(lambda meta: (meta["uri"], meta))
         | "commit/group" >> beam.GroupByKey()
         | "commit" >> beam.ParDo(CommitPartsDoFn(writer.root, folder)))
        return pipeline

    def stats(self) -> Stats:
        return self._stats
