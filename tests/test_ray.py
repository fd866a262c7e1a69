"""The Ray runner: the same build as the local runner, and complete after a worker dies."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from conftest import VIDCURATE, index_table, rejects_table, run_cli, shard_samples

PLUGINS = os.path.join(os.path.dirname(__file__), "plugins")
CHEAP = [
    {"op": "probe"},
    {"op": "split_shots", "min_clip_seconds": 1.0},
    {"op": "extract_clips", "keyframes": "none", "asr_audio": False, "max_height": 144},
    {"op": "metadata_teacher"},
    {"op": "consensus_selector"},
]


def _tables(out) -> tuple[list, list]:
    index = sorted((r["clip_id"], r["caption"], r["split"], r["shard"].split("/")[0]) for r in index_table(out))
    rejects = sorted((os.path.basename(r["uri"]), r["clip_id"] or "", r["stage"], r["reason"])
                     for r in rejects_table(out))
    return index, rejects


def _build(config: list[dict], manifest, out, tmp_path, *extra: str, fuse: bool = True) -> subprocess.CompletedProcess:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({"pipeline": config, "run": {"max_failure_ratio": 0.8, "fuse_cpu_stages": fuse}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PLUGINS, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*VIDCURATE, "build", "-i", str(manifest), "-o", str(out), "-c", str(path), *extra],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_the_default_build_on_ray_equals_the_local_build(default_build, corpus, tmp_path):
    out = tmp_path / "ray"
    done = run_cli("build", "--input", str(corpus["manifest"]), "--output", str(out), "--max-failure-ratio", "0.8",
                   "--runner", "ray")
    assert done.returncode == 0, done.stderr
    assert _tables(out) == _tables(default_build["out"])  # clip ids, captions, splits, rejects by reason
    stats = yaml.safe_load((out / "stats.json").read_text())["counters"]
    local = yaml.safe_load((default_build["out"] / "stats.json").read_text())["counters"]
    for key in ("probe.records_in", "split_shots.records_out", "speech_teacher.records_in",
                "consensus_selector.records_out"):
        assert stats[key] == local[key], key  # stats come back from the workers
    assert len(shard_samples(out)) == len(index_table(out))


@pytest.mark.slow
@pytest.mark.parametrize("crasher, fuse", [
    ("ray_faults:CrashOnce", False),  # its own stage, a Ray task: retried
    ("ray_faults:CrashOnceInActor", True),  # inside the fused CPU stage's actor: restarted, batch retried
])
def test_a_worker_that_dies_mid_build_is_retried_and_nothing_is_lost_or_doubled(corpus, tmp_path, crasher, fuse):
    reference = tmp_path / "reference"
    assert _build(CHEAP, corpus["manifest"], reference, tmp_path).returncode == 0
    marker = tmp_path / "crashed"
    crashing = [*CHEAP[:3], {"op": crasher, "marker": str(marker)}, *CHEAP[3:]]
    out = tmp_path / "ray"
    done = _build(crashing, corpus["manifest"], out, tmp_path, "--runner", "ray", fuse=fuse)
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # the worker really died once
    assert _tables(out) == _tables(reference)
    assert len(shard_samples(out)) == len(index_table(out))  # every clip once


@pytest.mark.slow
@pytest.mark.parametrize("fuse", [False, True])
def test_videos_stream_through_ray_a_batch_of_clips_at_a_time_with_the_local_result(corpus, tmp_path, fuse):
    import json

    from vidcurate.pipelines.bench.split import make_input

    long_video = tmp_path / "bikes_30s.mp4"  # bikes looped: 18 shots with real cuts
    make_input(str(long_video), 30, 144)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"uri": str(path), "title": "City bicycles and traffic"}) + "\n"
                                for path in (corpus["compilation"], long_video)))
    streamed = [*CHEAP[:2], {**CHEAP[2], "batch_size": 2}, *CHEAP[3:]]  # two clips per ffmpeg run
    reference = tmp_path / "reference"
    assert _build(streamed, manifest, reference, tmp_path).returncode == 0
    out = tmp_path / "ray"
    done = _build(streamed, manifest, out, tmp_path, "--runner", "ray", fuse=fuse)
    assert done.returncode == 0, done.stderr
    assert _tables(out) == _tables(reference)
    assert len(shard_samples(out)) == len(index_table(out))  # every clip once, every video committed
    counters = json.loads((out / "stats.json").read_text())["counters"]
    clips, videos = counters["extract_clips.records_out"], counters["probe.records_in"]
    if not fuse:  # each stage passes parts on as they come: at least one part per two clips reaches the driver
        assert counters["ray.parts"] >= clips / 2 > videos
    assert "ray.repeated_parts_dropped" not in counters


def test_ray_stages_fuse_cpu_operators_and_keep_each_gpu_operator_alone():
    from vidcurate.operators.teachers.generative import VideoTeacher
    from vidcurate.pipelines.build.config import BuildConfig
    from vidcurate.pipelines.runners.ray_runner import FusedStages, plan_stages

    ops = BuildConfig(pipeline=CHEAP).operators()
    gpu = VideoTeacher(model="some/vlm", gpus=0.5)
    stages = plan_stages([*ops[:3], gpu, *ops[3:]])
    assert [type(s).__name__ for s in stages] == ["FusedStages", "VideoTeacher", "FusedStages"]
    assert [o.name for o in stages[0].operators] == ["probe", "split_shots", "extract_clips"]
    assert stages[1].declared_resources().gpus == 0.5 and stages[1].is_stateful()
    assert stages[2].is_stateful()  # the selector loads a model: the fused stage is an actor pool
    assert not FusedStages(ops[:1]).is_stateful()  # probe alone: plain Ray tasks
    assert plan_stages(ops, fuse_cpu=False) == ops  # one Ray stage per operator


def test_ray_cpu_plan_shrinks_actor_requests_on_a_small_cluster_so_tasks_still_run(caplog):
    from vidcurate.pipelines.build.config import BuildConfig
    from vidcurate.pipelines.runners.ray_runner import plan_cpus, plan_stages

    # Unfused: probe, extract_clips and metadata_teacher are tasks (the largest asks 1 CPU);
    # split_shots and consensus_selector load state in setup(): two CPU actor pools of 1 CPU each.
    stages = plan_stages(BuildConfig(pipeline=CHEAP).operators(), fuse_cpu=False)
    with caplog.at_level("WARNING"):
        laptop = plan_cpus(stages, total_cpus=2)
    assert laptop.actor_scale == pytest.approx(0.45)  # 90% of the 1 CPU the tasks leave, over 2 asked
    assert laptop.pool_cpus == pytest.approx(0.5) and laptop.actors_per_pool(1) == 1
    assert "scaling their CPU requests by 0.45" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        node = plan_cpus(stages, total_cpus=16)
    assert node.actor_scale == 1.0 and not caplog.text
    assert node.pool_cpus == pytest.approx(7.5) and node.actors_per_pool(1) == 7 and node.actors_per_pool(4) == 1


def test_bench_runners_interleave_in_rounds_and_keep_the_fastest_of_each(monkeypatch, tmp_path):
    from vidcurate.pipelines.bench import runners as bench_runners

    calls = []
    times = iter([9.0, 20.0, 7.0, 25.0, 8.0, 14.0])  # local, ray, local, ray, ...: drift hits both

    def fake_build(runner, manifest, out, config_path):
        calls.append(runner)
        return {"seconds": next(times), "clips": 7, "stages": {}, "phases": {"ray.init": 1.0}, "peak_rss_mb": 900.0,
                "shard_bytes": 10**6, "received_bytes": 2000}

    monkeypatch.setattr(bench_runners, "_inputs", lambda folder, copies: "manifest.jsonl")
    monkeypatch.setattr(bench_runners, "_one", fake_build)
    result = bench_runners.run(workdir=str(tmp_path), copies=1, repeats=3, runners=("ray",))
    assert calls == ["local", "ray"] * 3
    best = result["runners"]
    assert (best["local"]["seconds"], best["ray"]["seconds"]) == (7.0, 14.0) and result["ratios"]["ray"] == 2.0
    text = bench_runners.report(result)
    assert "best of 3 rounds" in text and "2.00 x" in text and "MISSED" in text and "0.20% of 1.0 MB" in text


@pytest.mark.slow
def test_bench_runners_print_the_wall_time_ratios_startup_bytes_and_memory(tmp_path):
    # The bundled split config keeps it short (no teacher models to load three times).
    done = run_cli("bench", "runners", "-c", "split", "--copies", "1", "--repeats", "1", "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for text in ("local ", "ray ", "beam ", "ray runner (startup incl.)", "target <= 1.5x", "coordinator received",
                 "peak RSS", "stage throughput", "split_shots", "write_samples", "best of 1 round"):
        assert text in done.stdout, text
