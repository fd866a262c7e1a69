"""The Beam runner: the adapters in Beam's own test style (TestPipeline, beam.Create, assert_that),
runner parity (local, Ray, Beam's FnApiRunner and its multi-process mode give one dataset), a
writer killed after publishing a shard, and how little reaches the coordinator."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from typing import ClassVar

import apache_beam as beam
import pytest
import yaml
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from conftest import VIDCURATE, index_table, rejects_table, shard_samples
from vidcurate.operators.base import Operator, RecordError, Resources
from vidcurate.operators.write.sample_writer import REJECT, SHARD_SAMPLES, WRITTEN, SampleWriter, SinkOptions
from vidcurate.pipelines.runners.beam.model_handler import OperatorModelHandler
from vidcurate.pipelines.runners.beam.transforms import StageDoFn, WriteSamplesDoFn, route_rejects

# Clips at the videos' own sizes (up to 1280x720): what the coordinator receives is set against
# realistic shard bytes, not thumbnails.
CHEAP = [
    {"op": "probe"},
    {"op": "split_shots", "min_clip_seconds": 1.0},
    {"op": "extract_clips", "keyframes": "none", "asr_audio": False},
    {"op": "metadata_teacher"},
    {"op": "consensus_selector"},
]
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _pipeline():
    return BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


class Doubles(Operator):
    """x -> 2x; an odd x is refused (a reject)."""

    name: ClassVar[str] = "doubles"
    resources: ClassVar[Resources] = Resources(batch_size=2)

    def process_record(self, record: dict) -> dict:
        if record["x"] % 2:
            raise RecordError("odd", f"{record['uri']}: {record['x']} is odd")
        return {**record, "y": 2 * record["x"]}


class AddsLoadedOffset(Operator):
    """A model stage: setup() "loads" an offset, every record gets it (a teacher's shape)."""

    name: ClassVar[str] = "adds_loaded_offset"
    resources: ClassVar[Resources] = Resources(batch_size=3)
    offset: int = 100

    def setup(self) -> None:
        self._loaded = self.offset

    def process_batch(self, records: list[dict]) -> list[dict]:
        return [{**r, "y": r["x"] + self._loaded, "batch": len(records)} for r in records]


def _records(n):
    return [{"uri": f"v{i}.mp4", "video_id": f"v{i}", "x": i} for i in range(n)]


def test_a_cpu_stage_runs_as_a_dofn_on_batches_and_its_rejects_are_routed_out():
    with _pipeline() as p:
        out = (p | beam.Create(_records(5)) | beam.BatchElements(min_batch_size=2, max_batch_size=2)
               | beam.ParDo(StageDoFn(Doubles())))
        ok, rejects = route_rejects(out, "route")
        assert_that(ok | "ok y" >> beam.Map(lambda r: (r["uri"], r["y"])),
                    equal_to([("v0.mp4", 0), ("v2.mp4", 4), ("v4.mp4", 8)]), label="ok records")
        assert_that(rejects | "reasons" >> beam.Map(lambda m: (m["uri"], m[REJECT]["stage"], m[REJECT]["reason"])),
                    equal_to([("v1.mp4", "doubles", "odd"), ("v3.mp4", "doubles", "odd")]), label="rejects")


def test_a_model_stage_runs_through_run_inference_in_its_declared_batches():
    handler = OperatorModelHandler(AddsLoadedOffset(offset=7))
    assert handler.batch_elements_kwargs() == {"min_batch_size": 3, "max_batch_size": 3}
    with _pipeline() as p:
        out = p | beam.Create(_records(4)) | RunInference(handler)
        assert_that(out | beam.Map(lambda r: (r["x"], r["y"], r["batch"] <= 3)),
                    equal_to([(i, i + 7, True) for i in range(4)]))


def test_a_gpu_stage_asks_beam_for_an_accelerator_and_its_memory():
    class OnGpu(AddsLoadedOffset):
        resources: ClassVar[Resources] = Resources(gpus=1, memory_gb=16, batch_size=8)

    hints = OperatorModelHandler(OnGpu(), accelerator="nvidia-l4").get_resource_hints()
    assert hints == {"min_ram": "16GB", "accelerator": "type:nvidia-l4;count:1;install-nvidia-driver"}


def test_the_writer_dofn_publishes_shards_on_the_worker_and_passes_on_only_metadata(tmp_path):
    writer = SampleWriter(str(tmp_path), {"config_hash": "x"}, SinkOptions(shard_max_samples=2, open_shards=1))
    clips = [{"uri": f"v{i // 3}.mp4", "video_id": f"v{i // 3}", "clip_id": f"v{i // 3}_{i % 3}", "start": 0.0,
              "end": 1.0, "mp4": b"\x00" * 1000, "caption": f"clip {i}"} for i in range(6)]
    with _pipeline() as p:
        metas = p | beam.Create(clips) | beam.BatchElements(max_batch_size=4) | beam.ParDo(WriteSamplesDoFn(writer))
        assert_that(metas | beam.Map(lambda m: (m["clip_id"], "mp4" in m, m[WRITTEN]["mp4_bytes"] == 1000,
                                                 0 < m[SHARD_SAMPLES] <= 2)),
                    equal_to([(c["clip_id"], False, True, True) for c in clips]))
    shards = [os.path.join(root, name) for root, _, names in os.walk(tmp_path / "shards") for name in names]
    assert shards and all(name.endswith(".tar") for name in shards)  # every shard published, nothing staged
    keys = sorted(m.name.split(".")[0] for shard in shards for m in tarfile.open(shard) if m.name.endswith(".mp4"))
    assert keys == sorted(c["clip_id"] for c in clips)


def _tables(out) -> tuple[list, list]:
    index = sorted((r["clip_id"], r["caption"], r["split"], r["shard"].split("/")[0]) for r in index_table(out))
    rejects = sorted((os.path.basename(r["uri"]), r["clip_id"] or "", r["stage"], r["reason"])
                     for r in rejects_table(out))
    return index, rejects


def _cheap_config(tmp_path):
    path = tmp_path / "cheap.yaml"
    path.write_text(yaml.safe_dump({"pipeline": CHEAP, "run": {"max_failure_ratio": 0.8},
                                    "output": {"shard_max_samples": 4}}))
    return path


def _build(manifest, out, tmp_path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = _cheap_config(tmp_path)
    return subprocess.run([*VIDCURATE, "build", "-i", str(manifest), "-o", str(out), "-c", str(path), *extra],
                          capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


def _shard_bytes(out) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(out / "shards")
               for name in names)


def _every_sample_once_and_no_stray_shard(out) -> None:
    index = index_table(out)
    samples = shard_samples(out)
    assert sorted(samples) == sorted(r["clip_id"] for r in index)  # each clip exactly once
    on_disk = {os.path.relpath(os.path.join(root, name), out / "shards")
               for root, _, names in os.walk(out / "shards") for name in names}
    assert on_disk == {r["shard"] for r in index}  # no shard that no commit references, nothing staged


@pytest.fixture(scope="module")
def local_build(corpus, tmp_path_factory):
    """The reference: the corpus built by the local runner."""
    tmp = tmp_path_factory.mktemp("beam_reference")
    assert _build(corpus["manifest"], tmp / "local", tmp).returncode == 0
    return tmp / "local"


@pytest.mark.slow
def test_local_ray_and_beam_build_the_same_dataset_and_only_metadata_reaches_the_coordinator(corpus, local_build,
                                                                                             tmp_path):
    reference = local_build
    for name, extra in [("ray", ["--runner", "ray"]), ("beam", ["--runner", "beam"]),
                        ("beam-multi-process", ["--runner", "beam", "--", *MULTI_PROCESS])]:
        out = tmp_path / name
        done = _build(corpus["manifest"], out, tmp_path, *extra)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        assert _tables(out) == _tables(reference), name  # clip ids, captions, splits, rejects by reason
        _every_sample_once_and_no_stray_shard(out)
        counters = json.loads((out / "stats.json").read_text())["counters"]
        received = counters[f"{name.split('-')[0]}.driver_bytes"]
        assert 0 < received < 0.01 * _shard_bytes(out), (name, received, _shard_bytes(out))
        assert counters["write_samples.samples"] == len(index_table(out))


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["ray", "beam-multi-process"])
def test_a_writer_killed_after_publishing_a_shard_leaves_every_sample_exactly_once(corpus, local_build, tmp_path,
                                                                                 runner):
    reference = local_build
    out, marker = tmp_path / runner, tmp_path / "killed"
    extra = ["--runner", "ray"] if runner == "ray" else ["--runner", "beam", "--", *MULTI_PROCESS]
    done = _build(corpus["manifest"], out, tmp_path, *extra, env={"VIDCURATE_FAULT_AFTER_PUBLISH": str(marker)})
    assert marker.exists()  # a writer really died with its shard published and unreported
    if done.returncode != 0:  # the engine gave up on the job (no retries): the same command resumes it
        assert not (out / "index.parquet").exists()
        done = _build(corpus["manifest"], out, tmp_path, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tables(out) == _tables(reference)
    _every_sample_once_and_no_stray_shard(out)



def _beam_commit_files(out) -> list[str]:
    folder = out / "_journal" / "beam"
    return [name for _, _, names in os.walk(folder) for name in names if name.endswith(".jsonl")]


@pytest.mark.slow
def test_a_killed_beam_build_resumes_with_the_videos_its_pipeline_finished(corpus, local_build, tmp_path):
    """Commit files are journaled as they appear, and a dead run's at the next start: the resumed
    run does not redo the videos they hold, and the dataset holds every sample once."""
    out = tmp_path / "beam"
    config = _cheap_config(tmp_path)
    command = [*VIDCURATE, "build", "-i", str(corpus["manifest"]), "-o", str(out), "-c", str(config),
               "--runner", "beam"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline and not _beam_commit_files(out):
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = _beam_commit_files(out)
    assert left, "the build was not killed between a commit file and its journaling"
    assert not (out / "index.parquet").exists()

    done = _build(corpus["manifest"], out, tmp_path, "--runner", "beam")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tables(out) == _tables(local_build)
    _every_sample_once_and_no_stray_shard(out)
    runs = json.loads((out / "stats.json").read_text())["runs"]
    resumed = runs[-1]["counters"].get("write_samples.samples", 0)
    assert resumed < len(index_table(out))  # the dead run's finished videos were journaled, not redone
    assert not _beam_commit_files(out)
