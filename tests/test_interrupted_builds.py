"""A build interrupted at any moment, even before its first commit, is resumed by the same command.

Ctrl-C (SIGINT) at the first write and in the middle of the first video, and Ctrl-C or kill -9
during the first commit (kill -9 at 13 named moments: tests/test_crashes.py); each interrupted
build is re-run with the same command and must end with the index and rejects of an
uninterrupted build. Ctrl-C exits 130 with one line saying that the same command resumes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import VIDCURATE, run_cli
from test_resume import _check_shards_match_index, _commits, _tables
from test_resume import inputs  # noqa: F401  (the fixture: five real videos, a broken file, a config)

# Runs the CLI with the journal's first commit entry replaced by a crash (os._exit: like kill -9,
# no cleanup at all) or a Ctrl-C (KeyboardInterrupt): the commit's shard is published, its entry never written.
CRASH_IN_FIRST_COMMIT = """
import os, sys
from vidcurate.operators.write import journal
original = journal.Journal.append
def append(self, entry):
    if entry.get("kind") == "commit":
        if sys.argv[1] == "kill":
            os._exit(9)
        raise KeyboardInterrupt
    return original(self, entry)
journal.Journal.append = append
from vidcurate.pipelines.cli import cli
cli.main(sys.argv[2:], prog_name="vidcurate")
"""


@pytest.fixture(scope="module")
def reference_three(inputs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference_three") / "out"
    done = run_cli("build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"])
    assert done.returncode == 0, done.stderr
    return {"out": out, "tables": _tables(out)}


def _cached_but_no_shard(out) -> bool:
    """The first video is cut (its clips are in the stage cache) but nothing is written to shards yet."""
    cache = os.path.join(out, "_cache")
    cached = any(n.endswith(".pkl") for _, _, files in os.walk(cache) for n in files)
    shards = os.path.join(out, "shards")
    return cached and not any(files for _, _, files in os.walk(shards)) and _commits(out) == 0


MOMENTS = {
    "first_write": lambda out: os.path.exists(out / "config.resolved.yaml"),
    "mid_first_video": _cached_but_no_shard,
}


def _interrupt_when(command: list[str], ready, sig: int, timeout: float = 300) -> subprocess.CompletedProcess:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    # across exec (Python then installs no KeyboardInterrupt handler): give the build the default,
    # as a terminal would.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    sent = False
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(sig)
            sent = True
            break
        time.sleep(0.005)
    stdout, stderr = process.communicate(timeout=timeout)
    assert sent, f"the build finished before the moment to interrupt it: {stderr[-2000:]}"
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _resumes_to_the_uninterrupted_result(args, out, reference_three, stopped) -> None:
    if stopped.returncode == 130:
        assert "interrupted" in stopped.stderr and "run the same command again to resume" in stopped.stderr
        assert "Traceback" not in stopped.stderr and "Aborted!" not in stopped.stderr
    else:
        assert stopped.returncode == -signal.SIGKILL, (stopped.returncode, stopped.stderr[-2000:])
    assert not os.path.exists(out / "index.parquet")  # really stopped mid-build
    done = run_cli(*args)  # the same command again
    assert done.returncode == 0, done.stderr
    if "--verbose" in args:
        assert done.stderr.count("clips written") == 3
    assert _tables(out) == reference_three["tables"]
    _check_shards_match_index(out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT], ids=["ctrl-c"])  # kill -9: tests/test_crashes.py
@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_a_build_interrupted_before_its_first_commit_resumes(inputs, reference_three, tmp_path, moment, sig):
    out = tmp_path / "out"
    args = ["build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"], "--verbose"]
    stopped = _interrupt_when([*VIDCURATE, *args], lambda: MOMENTS[moment](out), sig)
    assert _commits(out) == 0
    # --verbose logs a video's outcome once it is committed, never for work a resume redoes.
    assert "clips written" not in stopped.stderr
    if sig == signal.SIGINT:
        assert stopped.returncode == 130, stopped.stderr[-2000:]
    _resumes_to_the_uninterrupted_result(args, out, reference_three, stopped)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_a_build_stopped_during_its_first_commit_resumes(inputs, reference_three, tmp_path, how):
    out = tmp_path / "out"
    args = ["build", "-i", inputs["first_three"], "-o", str(out), "-c", inputs["config"]]
    stopped = subprocess.run([sys.executable, "-c", CRASH_IN_FIRST_COMMIT, how, *args], capture_output=True,
                             text=True, timeout=300)
    if how == "kill":
        assert stopped.returncode == 9, stopped.stderr[-2000:]
        stopped.returncode = -signal.SIGKILL
    else:
        assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert _commits(out) == 0 and any(n.endswith(".tar") for _, _, f in os.walk(out / "shards") for n in f)
    _resumes_to_the_uninterrupted_result(args, out, reference_three, stopped)
