"""kill -9 at any moment, and inputs that kill their worker: a build loses nothing and never stalls.

The crash points of operators/kill_points.py kill the whole build (SIGKILL, no cleanup) at a
named moment: before anything is written, in a partial shard, during a shard rename, around a
journal commit, during the final table write, before the report. A chain of runs of the same
command is killed at each moment in turn (each run resumes what the previous ones left); the
run after the last kill must end with the index and rejects of an uninterrupted build, every
sample in exactly one whole shard. The same on Ray and on Beam (slow tests).

A poison input (one that kills the worker process cutting its clips, as a crash in a native
decoder would) is retried once, alone, then rejected as ``worker_crashed``; the other inputs
get their clips, and the build finishes by itself on every runner.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import VIDCURATE, index_table, rejects_table, run_cli
from test_resume import _check_shards_match_index, _commits, _journal_entries, _tables, _write_manifest
from test_resume import inputs, reference  # noqa: F401  (fixtures: five real videos and a broken file; their build)
from vidcurate.operators.kill_points import BUILD_PID_ENV, KILL_ENV

# In the order a build meets them, from its first second to its last. Each run of the chain
# resumes what the runs before it did, so later moments come in later runs.
MOMENTS = [
    "start",                                 # inputs and config read; nothing written yet
    "after:config.resolved.yaml",            # the first write
    "after:_cache/*",                        # mid first video: its cut clips cached, no shard yet
    "sample:shards/*",                       # a sample appended to a staged (partial) shard
    "before:shards/*",                       # during a shard rename: whole, not yet visible
    "after:shards/*",                        # a shard visible, its samples not yet committed
    "before:_journal/entry-*",               # a commit entry staged, not yet renamed
    "after:_journal/entry-*#2",              # the run's second commit
    "after:_journal/snapshot-*.rejects.parquet",  # the close: the snapshot's tables, no snapshot entry yet
    "before:index.parquet",                  # during the final table write
    "after:index.parquet",                   # index published, rejects table not yet
    "after:stats.json",                      # tables written, card and report not yet
    "before:report.html",                    # the last moment: everything but the report
]


def _visible_shards_are_whole(out) -> None:
    """No partial shard is ever visible: every published .tar reads to its end."""
    for folder, _, files in os.walk(out / "shards"):
        for name in files:
            if name.endswith(".tar"):
                with tarfile.open(os.path.join(folder, name)) as tar:
                    assert tar.getmembers(), name


def _visible_tables_are_whole(out) -> None:
    for name in ("index.parquet", "rejects.parquet"):
        if (out / name).exists():
            pq.read_table(out / name)


def _env_killing_at(moment: str) -> dict:
    """This process's environment (without a kill point or build pid of its own) with ``moment`` to kill at."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, BUILD_PID_ENV)}
    return {**env, KILL_ENV: moment}


def _build_at_its_first_commit(args: list[str], out) -> subprocess.Popen:
    """``vidcurate <args>`` started, once it has committed its first video."""
    supervisor = subprocess.Popen([*VIDCURATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not _commits(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    return supervisor


def _killed_at_each_moment_then_resumed(args: list[str], out, reference, moments=MOMENTS) -> list[str]:
    """Run ``vidcurate <args>`` killed at each moment in turn, then once more to the end."""
    for moment in moments:
        run = subprocess.run([*VIDCURATE, *args], capture_output=True, text=True, timeout=900,
                             env=_env_killing_at(moment))
        assert run.returncode == -signal.SIGKILL, (moment, run.returncode, run.stderr[-3000:])
        _visible_shards_are_whole(out)
        _visible_tables_are_whole(out)
    done = run_cli(*args)  # the same command, not killed
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tables(out) == (reference["index"], reference["rejects"])
    _check_shards_match_index(out)
    assert _journal_entries(out) == 1
    return moments


def test_a_build_killed_at_thirteen_moments_resumes_each_time_to_the_uninterrupted_result(inputs, reference,
                                                                                          tmp_path):
    out = tmp_path / "out"
    args = ["build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"]]
    assert len(_killed_at_each_moment_then_resumed(args, out, reference)) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["ray", "beam"])
def test_a_build_killed_at_thirteen_moments_resumes_on_every_runner(inputs, reference, tmp_path, runner):
    out = tmp_path / "out"
    args = ["build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"], "--runner", runner]
    _killed_at_each_moment_then_resumed(args, out, reference)


@pytest.fixture(scope="module")
def poisoned(inputs, tmp_path_factory) -> dict:
    """Three real videos, one of which (named poison_*) kills the worker that cuts its clips."""
    folder = tmp_path_factory.mktemp("bad_worker_inputs")
    names = ["v0_bikes.mp4", "poison_carphone.mp4", "v1_bigbuckbunny.mp4"]
    for name, source in zip(names, ["v0_bikes.mp4", "v1_carphone_pristine.mp4", "v3_bigbuckbunny.mp4"]):
        shutil.copy(inputs["folder"] / source, folder / name)
    return {"manifest": _write_manifest(folder, names), "names": names}


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=pytest.mark.slow),
                                    pytest.param("beam", marks=pytest.mark.slow)])
def test_an_input_that_kills_its_worker_is_retried_once_then_rejected_and_the_build_goes_on(
        inputs, poisoned, tmp_path, runner):
    out = tmp_path / "out"
    args = ["build", "-i", poisoned["manifest"], "-o", str(out), "-c", inputs["config"], "--runner", runner]
    done = subprocess.run([*VIDCURATE, *args], capture_output=True, text=True, timeout=900,
                          env=_env_killing_at("worker:extract_clips@poison_"))
    assert done.returncode == 0, done.stderr[-3000:]
    rejects = [r for r in rejects_table(out) if "poison" in r["uri"]]
    assert [(r["stage"], r["reason"]) for r in rejects] == [("extract_clips", "worker_crashed")], rejects
    assert "died 2 times (in extract_clips)" in rejects[0]["detail"]
    with_clips = {os.path.basename(r["uri"]) for r in index_table(out)}
    assert with_clips == {"v0_bikes.mp4", "v1_bigbuckbunny.mp4"}  # the others are whole
    strikes = (out / "_crashes" / "strikes.jsonl").read_text().splitlines()
    assert sum("poison" in line for line in strikes) == 2
    _check_shards_match_index(out)
    if runner != "ray":  # Ray restarts its own workers; elsewhere the supervisor restarts the build
        assert done.stderr.count("restarting it") >= 2, done.stderr[-3000:]

    # retry-failed gives the set-aside video a fresh try: here it crashes twice again, and the
    # retried input yielding no clip, retry-failed reports failure (exit 1), as for any reason.
    again = subprocess.run([*VIDCURATE, "retry-failed", str(out)], capture_output=True, text=True, timeout=900,
                           env=_env_killing_at("worker:extract_clips@poison_"))
    assert again.returncode == 1 and "extract_clips/worker_crashed (1)" in again.stderr, again.stderr[-3000:]
    strikes = (out / "_crashes" / "strikes.jsonl").read_text().splitlines()
    assert sum("poison" in line for line in strikes) == 2  # the old strikes forgiven, two new ones
    assert {os.path.basename(r["uri"]) for r in index_table(out)} == {"v0_bikes.mp4", "v1_bigbuckbunny.mp4"}
    assert [r["reason"] for r in rejects_table(out) if "poison" in r["uri"]] == ["worker_crashed"]


def test_a_build_process_killed_from_outside_is_restarted_and_finishes(inputs, reference, tmp_path):
    """The kernel's OOM killer takes the build's process (not the supervisor): the build restarts and resumes."""
    out = tmp_path / "out"
    args = ["build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"]]
    supervisor = _build_at_its_first_commit(args, out)
    children = (Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split())
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGKILL)
    stdout, stderr = supervisor.communicate(timeout=600)
    assert supervisor.returncode == 0, stderr[-3000:]
    assert "killed by SIGKILL" in stderr and "restarting it" in stderr
    assert _tables(out) == (reference["index"], reference["rejects"])
    _check_shards_match_index(out)


def test_the_supervisor_gives_up_on_a_build_that_dies_twice_outside_any_video(tmp_path):
    from vidcurate.pipelines.build.supervisor import supervise

    said = []
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    assert supervise([], str(tmp_path / "_crashes"), said.append, program=crash) == 1
    assert len(said) == 2 and "restarting it once" in said[0]
    assert said[1].startswith("error: the build was killed by SIGKILL twice in a row outside the work on any video")
    assert supervise([], str(tmp_path / "_crashes"), said.append, program=[sys.executable, "-c", "exit(3)"]) == 3
    # Killed by SIGTERM (someone stopping it, e.g. `ray job stop`): passed on as 143, never restarted.
    said.clear()
    term = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    assert supervise([], str(tmp_path / "_crashes"), said.append, program=term) == 128 + signal.SIGTERM
    assert said == []


def test_sigterm_to_the_command_stops_the_build_without_a_restart(inputs, tmp_path):
    out = tmp_path / "out"
    args = ["build", "-i", inputs["manifest"], "-o", str(out), "-c", inputs["config"]]
    supervisor = _build_at_its_first_commit(args, out)
    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=300)
    assert supervisor.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "restarting" not in stderr and not (out / "index.parquet").exists()


_BUSY_THEN = """
import os, sys, time
from vidcurate.operators.crash_ledger import CrashLedger
ledger = CrashLedger(sys.argv[1])
ledger.busy("probe", [sys.argv[2]])
print("busy", flush=True)
if sys.argv[3] == "die":
    os._exit(1)
time.sleep(60)
"""


def test_the_ledger_strikes_only_the_videos_of_dead_processes(tmp_path):
    from vidcurate.operators.crash_ledger import CrashLedger

    folder = str(tmp_path / "_crashes")
    alive = subprocess.Popen([sys.executable, "-c", _BUSY_THEN, folder, "alive.mp4", "wait"], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert alive.stdout.readline() == "busy\n"
        assert subprocess.run([sys.executable, "-c", _BUSY_THEN, folder, "dead.mp4", "die"]).returncode == 1
        ledger = CrashLedger(folder)
        assert ledger.harvest() == [{"uri": "dead.mp4", "stage": "probe"}]
        assert ledger.harvest() == []  # each death is charged once
        assert ledger.strikes() == {"dead.mp4": 1}
        ledger.forgive({"dead.mp4"})
        assert ledger.strikes() == {}
    finally:
        alive.kill()
        alive.wait()
    assert CrashLedger(folder).harvest() == [{"uri": "alive.mp4", "stage": "probe"}]  # now it is dead too
