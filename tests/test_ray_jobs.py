"""Ray jobs on a real local Ray head: `vidcurate submit` and the documented `ray job submit` form.

The head runs in a temp dir on free ports with RAY_AUTH_MODE=disabled (head and clients),
so it never meets another Ray instance on the machine, and is stopped by its process ids
(never `ray stop`, which kills every Ray process on the machine by name).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from conftest import index_table, shard_samples
import samples

VENV_BIN = os.path.dirname(sys.executable)
RAY = os.path.join(VENV_BIN, "ray") if os.path.exists(os.path.join(VENV_BIN, "ray")) else shutil.which("ray")
VIDCURATE = [sys.executable, "-m", "vidcurate.pipelines.cli"]
TITLE = "City bicycles and traffic"
DESCRIPTION = "A street with parked bicycles and passing cars. Sample footage."
# The metadata teacher's candidates: the title and the description's first sentence. They
# agree equally with each other, so the longer one is the caption (consensus tie rule).
CAPTION = "A street with parked bicycles and passing cars."
CHEAP_CONFIG = """\
pipeline:
  - op: probe
  - op: split_shots
  - op: extract_clips
    keyframes: none
    asr_audio: false
    max_height: 144
  - op: metadata_teacher
  - op: consensus_selector
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client_env() -> dict:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    return env


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of the live processes (zombies left out), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    table[int(entry)] = (int(fields[1]), fields[19])
            except (OSError, IndexError, ValueError):
                pass
    return table


def _descendants(root: int) -> dict[int, str]:
    """root and every process below it (Ray workers call setsid, so the process group is not enough)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found[pid] = table[pid][1]
            todo.extend(children.get(pid, []))
    return found


def _stop_head(head: subprocess.Popen) -> None:
    """Stop the head we started and everything it spawned, by process id only."""
    tree = _descendants(head.pid)
    try:
        os.killpg(head.pid, signal.SIGTERM)  # ray start, gcs_server, raylet, dashboard...
    except ProcessLookupError:
        pass
    for pid in tree:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 3  # Ray drains gracefully for 10 s and more: nothing here needs that
    while time.time() < deadline:
        alive = {pid for pid, (_, start) in _process_table().items() if tree.get(pid) == start}
        if not alive:
            break
        time.sleep(0.3)
    for pid, (_, start) in _process_table().items():
        if tree.get(pid) == start:  # same pid and start time: still our process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _job_api_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/jobs/", timeout=2) as response:
            json.load(response)
            return response.status == 200
    except Exception:
        return False


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head (2 CPUs, dashboard on a free port) in its own temp dir."""
    if RAY is None:
        pytest.skip("no ray executable")
    temp_dir = tempfile.mkdtemp(prefix="vcray", dir="/tmp")  # short: Ray's socket paths have a length limit
    low = _free_port()
    ports: dict[str, int] = {}
    for name in ("port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port",
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port"):
        port = _free_port()
        while low <= port <= low + 200 or port in ports.values():  # Ray refuses a port inside the worker range
            port = _free_port()
        ports[name] = port
    env = dict(_client_env(), RAY_USAGE_STATS_ENABLED="0")
    command = [RAY, "start", "--head", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               f"--temp-dir={temp_dir}", "--disable-usage-stats", "--block",
               f"--min-worker-port={low}", f"--max-worker-port={low + 200}",
               *(f"--{name}={port}" for name, port in ports.items())]
    log_path = os.path.join(temp_dir, "head.log")
    with open(log_path, "w") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.time() + 90
        while not _job_api_ready(url):
            if head.poll() is not None or time.time() > deadline:
                with open(log_path) as handle:
                    pytest.fail(f"the Ray head did not start (exit {head.poll()}):\n{handle.read()[-3000:]}")
            time.sleep(0.5)
        yield {"address": url, "temp_dir": temp_dir}
    finally:
        _stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory) -> dict:
    """A manifest of the real bikes.mp4 (6 shots, 10 s) with a title, and a cheap config."""
    folder = tmp_path_factory.mktemp("ray_job_inputs")
    shutil.copyfile(samples.sample("bikes.mp4"), folder / "bikes.mp4")
    manifest = folder / "manifest.jsonl"
    manifest.write_text(json.dumps({"uri": "bikes.mp4", "title": TITLE, "description": DESCRIPTION}) + "\n")
    working_dir = folder / "job"
    working_dir.mkdir()
    (working_dir / "cheap.yaml").write_text(CHEAP_CONFIG)
    return {"manifest": manifest, "config": working_dir / "cheap.yaml", "working_dir": working_dir}


def _check_build(out) -> None:
    rows = index_table(out)
    assert rows, "no clip in the index"
    assert {r["caption"] for r in rows} == {CAPTION}
    assert all(r["caption_teacher"] for r in rows)
    stored = shard_samples(out)
    assert set(stored) == {r["clip_id"] for r in rows}
    for sample in stored.values():
        assert sample["mp4"][4:8] == b"ftyp" and json.loads(sample["json"])["caption"] == CAPTION


def _job_status(address: str, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(address).get_job_status(job_id))


@pytest.mark.slow
def test_vidcurate_submit_runs_the_build_as_a_ray_job(ray_head, job_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # this process's own job client
    out = tmp_path / "out"
    done = subprocess.run([*VIDCURATE, "submit", "--address", ray_head["address"],
                           "--input", str(job_inputs["manifest"]), "--output", str(out),
                           "--config", str(job_inputs["config"]),  # a local file: shipped in a temp working_dir
                           "--max-failure-ratio", "0.9", "--max-actors", "1", "--verbose"],  # passed on to the build
                          capture_output=True, text=True, timeout=240, env=_client_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id, entrypoint = done.stdout.split("submitted Ray job ", 1)[1].split("\n", 1)[0].split(": ", 1)
    assert entrypoint.endswith(" --max-failure-ratio 0.9 --max-actors 1 --verbose"), entrypoint
    assert f"INFO {out}: " in done.stdout  # --verbose reached the build: its log lines are in the job's logs
    assert f"ray job logs -f {job_id} --address {ray_head['address']}" in done.stdout
    assert f"job {job_id} SUCCEEDED" in done.stdout
    assert "vidcurate build -> " in done.stdout  # the build's summary, from the tailed job logs
    assert _job_status(ray_head["address"], job_id) == "SUCCEEDED"
    _check_build(out)


@pytest.mark.slow
def test_submit_exits_1_when_the_job_fails(ray_head, tmp_path):
    done = subprocess.run([*VIDCURATE, "submit", "--address", ray_head["address"], "--no-ship-package",
                           "--input", str(tmp_path / "no-such-manifest.jsonl"), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=_client_env())
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED" in done.stderr and "error: " in done.stdout  # the build's own error, from the job logs
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.slow
def test_shipped_package_is_what_the_job_imports(ray_head, tmp_path, monkeypatch):
    """py_modules: a node without vidcurate imports the shipped copy (here it wins over the install)."""
    from ray.job_submission import JobSubmissionClient

    from vidcurate.pipelines.runners.ray_jobs import follow_job, package_parts, stage_package

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    client = JobSubmissionClient(ray_head["address"])
    code = ("import vidcurate.pipelines.cli as c, vidcurate.operators.probe as p, vidcurate.schemas.records as r; "
            "print('FILES', c.__file__, p.__file__, r.__file__)")
    job_id = client.submit_job(entrypoint=f"python -c {code!r}",
                               runtime_env={"py_modules": [stage_package(str(tmp_path))]})
    assert follow_job(client, job_id) == "SUCCEEDED"
    assert package_parts() == ["operators", "pipelines", "schemas"]  # found, not listed
    files = client.get_job_logs(job_id).split("FILES ", 1)[1].split()
    assert len(files) == 3 and all("py_modules_files" in f for f in files), files
    assert not any(f.startswith(os.path.dirname(os.path.dirname(__file__))) for f in files)


@pytest.mark.slow
def test_documented_ray_job_submit_form(ray_head, job_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    out = tmp_path / "out"
    job_id = f"vidcurate-doc-{os.getpid()}"
    done = subprocess.run([RAY, "job", "submit", "--address", ray_head["address"], "--submission-id", job_id,
                           "--working-dir", str(job_inputs["working_dir"]), "--",
                           "vidcurate", "build", "--input", str(job_inputs["manifest"]), "--output", str(out),
                           "--config", "cheap.yaml", "--runner", "ray"],
                          capture_output=True, text=True, timeout=240, env=_client_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _job_status(ray_head["address"], job_id) == "SUCCEEDED", done.stdout[-3000:]
    _check_build(out)


def test_submit_refuses_an_unreachable_address(tmp_path):
    done = subprocess.run([*VIDCURATE, "submit", "--address", f"http://127.0.0.1:{_free_port()}",
                           "--input", "in", "--output", "out"],
                          capture_output=True, text=True, timeout=60, env=_client_env())
    assert done.returncode == 2
    assert "cannot reach the Ray job server" in done.stderr and "Traceback" not in done.stderr


def test_submit_refuses_a_bad_config_before_submitting(tmp_path):
    with socket.socket() as listener:  # something listens, so only the config can be wrong
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"http://127.0.0.1:{listener.getsockname()[1]}"
        bad = tmp_path / "bad.yaml"
        bad.write_text("pipeline:\n  - op: probe\n    bogus_field: 1\n")
        outside = tmp_path / "cheap.yaml"
        outside.write_text(CHEAP_CONFIG)
        (tmp_path / "wd").mkdir()
        cases = [(["--config", "no-such-config"], "not a bundled config name"),
                 (["--config", str(bad)], "bogus_field"),
                 (["--config", str(outside), "--working-dir", str(tmp_path / "wd")], "outside --working-dir")]
        for extra, message in cases:
            done = subprocess.run([*VIDCURATE, "submit", "--address", address, "--input", "in", "--output", "out",
                                   *extra], capture_output=True, text=True, timeout=60, env=_client_env())
            assert done.returncode == 2, (extra, done.stderr)
            assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
