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

When the pipeline is done, this process reads the commit files one at a time and hands each
video's metadata to ``emit`` (the build's sink journals it), so it never holds the dataset.
Commit files of a run that died before journaling them are removed at the next start; the
shards they named are then unreferenced and the sink's repair removes them.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import ClassVar, Iterable

from vidcurate.operators.stats import Stats
from vidcurate.operators.write.destination import Destination
from vidcurate.operators.write.layout import BEAM_COMMITS_DIR
from vidcurate.pipelines.runners.base import Emit

log = logging.getLogger(__name__)

DEFAULT_BEAM_RUNNER = "FnApiRunner"


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
        dest.remove(BEAM_COMMITS_DIR)  # a dead run's commit files: their shards are orphans now
        folder = f"{BEAM_COMMITS_DIR}/{uuid.uuid4().hex[:12]}"
        clock = time.perf_counter()
        result = self._pipeline(sources, folder).run()
        result.wait_until_finish()
        self._stats.add_time("beam.execute", time.perf_counter() - clock)
        from vidcurate.pipelines.runners.beam.transforms import stats_from_metrics

        self._stats.merge(stats_from_metrics(result))
        for name in dest.listdir(folder):  # one bundle's videos at a time
            for line in dest.read_bytes(f"{folder}/{name}").decode("utf-8").splitlines():
                video = json.loads(line)
                self._stats.incr("beam.driver_bytes", len(line))
                emit(video["metas"], [video["uri"]])
                if self.progress is not None:
                    self.progress.videos_done(1)
        dest.remove(BEAM_COMMITS_DIR)
        dest.close()
        return self.stats()

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
