"""The operator contract: configuration validation, errors as data, batch isolation, stats."""
from __future__ import annotations

from typing import ClassVar, Literal

import pytest
from pydantic import Field, ValidationError

from vidcurate.operators.base import Operator, RecordError, Resources, reject
from vidcurate.pipelines.build.config import ConfigError, build_operator, load_config
from vidcurate.pipelines.runners.local import LocalRunner


class Doubler(Operator):
    """A per-record operator: fails on request, to exercise the contract."""

    name: ClassVar[str] = "doubler"
    factor: int = Field(2, ge=1)
    mode: Literal["copy", "fan_out"] = "copy"

    def process_record(self, record):
        if record["x"] == 13:
            raise RecordError("unlucky", f"x={record['x']}")
        if record["x"] == 0:
            return 1 / record["x"]
        if self.mode == "fan_out":
            return [{**record, "y": i} for i in range(self.factor)]
        return {**record, "x": record["x"] * self.factor}


class BatchModel(Operator):
    """A batched operator whose batch fails as a whole when it contains a poison record."""

    name: ClassVar[str] = "batch_model"
    resources: ClassVar[Resources] = Resources(gpus=0.5, batch_size=4)
    setups: ClassVar[list] = []

    def setup(self):
        BatchModel.setups.append(id(self))

    def process_batch(self, records):
        if any(r.get("poison") for r in records):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return [{**r, "scored": True} for r in records]


def test_fields_are_validated_on_creation():
    with pytest.raises(ValidationError) as info:
        Doubler(factor=0)
    assert "factor" in str(info.value)
    with pytest.raises(ValidationError) as info:
        Doubler(mode="triple")
    assert "'copy' or 'fan_out'" in str(info.value)
    with pytest.raises(ValidationError) as info:
        Doubler(facter=3)
    assert "facter" in str(info.value)


def test_config_errors_name_the_step_the_field_and_the_allowed_values():
    with pytest.raises(ConfigError, match=r"step 2 \(split_shots\): field 'detector'.*'content'"):
        build_operator({"op": "split_shots", "detector": "magic"}, 2, "my.yaml")
    with pytest.raises(ConfigError, match=r"my.yaml: pipeline step 1 \(probe\): unknown field 'min_durration'"):
        build_operator({"op": "probe", "min_durration": 3}, 1, "my.yaml")
    with pytest.raises(ConfigError, match=r"unknown operator 'splitter' \(did you mean 'split_shots'\?\); known: "
                                          r".*split_shots"):
        build_operator({"op": "splitter"}, 1, "my.yaml")
    with pytest.raises(ConfigError, match="mapping with an 'op' key"):
        build_operator("probe", 1, "my.yaml")


def test_broken_config_files_are_named(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("pipeline: [\n")
    with pytest.raises(ConfigError, match="bad.yaml.*invalid YAML"):
        load_config(str(bad_yaml))
    no_pipeline = tmp_path / "empty.yaml"
    no_pipeline.write_text("output: {}\n")
    with pytest.raises(ConfigError, match="empty.yaml.*'pipeline' list"):
        load_config(str(no_pipeline))
    bad_run = tmp_path / "run.yaml"
    bad_run.write_text("pipeline: [{op: probe}]\nrun: {max_failure_ratio: 3}\n")
    with pytest.raises(ConfigError, match="run.max_failure_ratio"):
        load_config(str(bad_run))
    with pytest.raises(ConfigError, match="nope.yaml.*cannot be read"):
        load_config(str(tmp_path / "nope.yaml"))


def test_a_bad_step_is_reported_once_beside_the_bad_sections(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("pipeline: [probe, {op: split_shots, threshold: x}]\noutput: {open_shards: 0}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines  # not also pydantic's "pipeline.0: not a dictionary"
    assert "step 1: each step must be a mapping" in lines[0] and "step 2 (split_shots): field 'threshold'" in lines[1]
    assert "field 'output.open_shards'" in lines[2]


def test_resources_are_validated():
    with pytest.raises(ValueError, match="batch_size"):
        Resources(batch_size=0)
    with pytest.raises(ValueError):
        Resources(gpus=-1)
    assert BatchModel().declared_resources() == Resources(gpus=0.5, batch_size=4)


def test_failures_become_reject_records_and_the_rest_flows_on():
    op = Doubler()
    out = op([{"uri": "a", "x": 1}, {"uri": "b", "x": 13}, {"uri": "c", "x": 0}, {"uri": "d", "x": 5}])
    by_uri = {r["uri"]: r for r in out}
    assert by_uri["a"]["x"] == 2 and by_uri["d"]["x"] == 10
    assert (by_uri["b"]["status"], by_uri["b"]["error_stage"], by_uri["b"]["error_reason"]) == (
        "rejected", "doubler", "unlucky")
    assert by_uri["b"]["error_detail"] == "x=13"
    assert by_uri["c"]["error_reason"] == "unexpected_error"
    assert "ZeroDivisionError" in by_uri["c"]["error_detail"] and "test_contract.py" in by_uri["c"]["error_detail"]
    counters = op.stats.counters
    assert counters["doubler.records_in"] == 4 and counters["doubler.records_out"] == 2
    assert counters["doubler.rejected.unlucky"] == 1 and counters["doubler.rejected.unexpected_error"] == 1


@pytest.mark.parametrize("ledger", [False, True], ids=["plain", "inside-a-build"])
def test_records_without_a_uri_go_through_an_operator_too(tmp_path, monkeypatch, ledger):
    """Tools and benchmarks call operators on records of their own (no source uri), also while a
    build's crash ledger is active in the process."""
    from vidcurate.operators.crash_ledger import LEDGER_ENV

    if ledger:
        monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "_crashes"))
    assert [r["x"] for r in Doubler()([{"x": 1}, {"x": 2}])] == [2, 4]


def test_rejected_records_pass_through_untouched_and_lose_heavy_payloads():
    earlier = reject({"uri": "z", "x": 13, "mp4": b"\0" * 100}, "probe", "empty_file", "0 bytes")
    assert "mp4" not in earlier
    op = Doubler()
    out = op([earlier, {"uri": "a", "x": 2}])
    assert earlier in out and {"uri": "a", "x": 4} in out
    assert op.stats.counters["doubler.records_in"] == 1


def test_fan_out_one_record_to_many():
    out = Doubler(mode="fan_out", factor=3)([{"uri": "a", "x": 1}])
    assert [r["y"] for r in out] == [0, 1, 2]


def test_a_failing_batch_is_retried_per_record_so_only_the_culprit_is_rejected():
    op = BatchModel()
    records = [{"uri": str(i), "poison": i == 2} for i in range(4)]
    out = op(records)
    assert [r["uri"] for r in out if r.get("scored")] == ["0", "1", "3"]
    [bad] = [r for r in out if r.get("status") == "rejected"]
    assert bad["uri"] == "2" and bad["error_reason"] == "unexpected_error" and "CUDA error" in bad["error_detail"]
    assert op.stats.counters["batch_model.batch_retried_per_record"] == 1


def test_local_runner_sets_up_once_batches_by_declared_size_and_merges_stats():
    BatchModel.setups.clear()
    ops = [Doubler(), BatchModel()]
    seen_batches = []
    original = BatchModel.process_batch

    def spy(self, records):
        seen_batches.append(len(records))
        return original(self, records)

    BatchModel.process_batch = spy
    try:
        emitted, finished = [], []
        stats = LocalRunner(ops, videos_per_chunk=5).run(({"uri": str(i), "x": i + 1} for i in range(10)),
                                                         lambda records, done: (emitted.append(len(records)),
                                                                                finished.append(done)))
    finally:
        BatchModel.process_batch = original
    assert len(BatchModel.setups) == 1
    assert seen_batches == [4, 1, 4, 1]  # two chunks of 5, each in batches of 4 + 1
    # Each batch is handed on as soon as the last operator returns it; a chunk's videos are
    # declared finished after its last batch.
    assert emitted == [4, 1, 0, 4, 1, 0]
    assert finished == [[], [], ["0", "1", "2", "3", "4"], [], [], ["5", "6", "7", "8", "9"]]
    assert stats.counters["doubler.records_in"] == 10 and stats.counters["batch_model.records_out"] == 10
    assert "batch_model.process" in stats.seconds


class ManyClips(Operator):
    """One long video -> ``clips`` small clip records (as a splitter does)."""

    name: ClassVar[str] = "many_clips"
    clips: int = 1000

    def process_record(self, record):
        return [{**record, "clip": i} for i in range(self.clips)]


class Payload:
    """A clip's bytes; counts how many are alive."""

    alive = 0

    def __init__(self):
        self.data = bytearray(1 << 20)
        Payload.alive += 1

    def __del__(self):
        Payload.alive -= 1


class Cutter(Operator):
    """Gives each clip a megabyte of 'mp4' bytes, 10 clips a batch (as extract_clips does)."""

    name: ClassVar[str] = "cutter"
    resources: ClassVar[Resources] = Resources(batch_size=10)

    def process_batch(self, records):
        return [{**r, "mp4": Payload()} for r in records]


def test_local_runner_streams_a_long_videos_clips_so_memory_holds_a_batch_not_the_video():
    most_alive = 0

    def emit(records, done):
        nonlocal most_alive
        most_alive = max(most_alive, Payload.alive)
        sizes.append(len(records))
        finished.extend(done)

    sizes, finished = [], []
    LocalRunner([ManyClips(), Cutter()], videos_per_chunk=4).run([{"uri": "long.mp4", "x": 1}], emit)
    assert sizes == [10] * 100 + [0] and finished == ["long.mp4"]
    assert most_alive <= 10  # the batch being emitted, never the video's 1000 clips (1 GB)
