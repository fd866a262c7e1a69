"""The build's supervisor: a build whose process dies is restarted, and resumes.

``vidcurate build`` runs the build in a child process (the same command) and waits for it.
When the child dies of a signal (a crash in a native decoder, the kernel's OOM killer) or
exits ``WORKER_LOST`` (its runner lost a worker process and gave up: Beam's direct runner),
the supervisor starts the same command again. The journal resumes the build, and the crash
ledger (operators/crash_ledger.py) has charged the crash to the videos the dead process was
on: they are retried alone, and set aside as ``worker_crashed`` after a second crash. So one
poison input never stops a build, and each restart sets a video closer to aside, which bounds
the restarts. A crash that left no video behind (not an input's fault) is restarted once; a
second one in a row stops the build with an error.

Ctrl-C, SIGTERM and SIGHUP are passed on to the child (it runs in its own process group, so a
terminal's Ctrl-C reaches it once, through here), which exits as an unsupervised build
does, and a stopped build is never restarted; nor is one that died of a signal that is not a
crash (``CRASH_SIGNALS``). The child dies with the supervisor (``PR_SET_PDEATHSIG``): ``kill -9`` of the build's
process stops all of it, and the same command resumes. Ray restarts its own workers; on Ray
the supervisor only matters when the driver process itself dies.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

from vidcurate.operators import kill_points
from vidcurate.operators.crash_ledger import LEDGER_ENV, CrashLedger

SUPERVISED_ENV = "VIDCURATE_SUPERVISED"  # set in the child: it runs the build itself
RESTART_ENV = "VIDCURATE_RESTART"  # in the child: how many times the supervisor restarted the build (0: first run)
WORKER_LOST = 75  # EX_TEMPFAIL: the runner lost a worker mid-video; the supervisor restarts the build
# Deaths that are crashes (a native library, the OOM killer's SIGKILL): restarted. Any other signal
# (SIGTERM, SIGHUP, ...) is someone stopping the build: passed on as the exit status, never restarted.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE, signal.SIGKILL}
_PR_SET_PDEATHSIG = 1


def supervising() -> bool:
    """Whether this process should supervise the build instead of running it (it is the command's
    own process, Linux, and not already a supervised child)."""
    return not os.environ.get(SUPERVISED_ENV) and sys.platform.startswith("linux")


def supervise(argv: list[str], ledger_folder: str, say=None, program: list[str] | None = None) -> int:
    """Run ``vidcurate <argv>`` (or ``program``) as a child until it finishes; its exit code."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    kill_points.mark_build_process()
    env = {**os.environ, SUPERVISED_ENV: "1", LEDGER_ENV: ledger_folder}
    command = program or [sys.executable, "-m", "vidcurate.pipelines.cli", *argv]
    blank_crashes = restarts = 0
    while True:
        code, stopped = _run_child(command, {**env, RESTART_ENV: str(restarts)})
        restarts += 1
        crashed = (code < 0 and -code in CRASH_SIGNALS) or code == WORKER_LOST
        if stopped or not crashed:  # finished, failed, or stopped by Ctrl-C / SIGTERM: as the child says
            return 128 - code if code < 0 else code
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else "lost a worker process"
        struck = CrashLedger(ledger_folder).harvest() if os.path.isdir(ledger_folder) else []
        if struck:
            blank_crashes = 0
            videos = sorted({s["uri"] for s in struck})
            say(f"vidcurate: the build {how} while {_on(struck)} worked on {', '.join(videos[:3])}"
                f"{' and more' if len(videos) > 3 else ''}; restarting it: they are retried alone, and set aside "
                "if they crash it again")
        elif code == WORKER_LOST:  # the driver already harvested the dead worker's videos
            blank_crashes = 0
            say(f"vidcurate: the build {how}; restarting it (the videos it was on are retried alone)")
        else:
            blank_crashes += 1
            if blank_crashes >= 2:
                say(f"error: the build {how} twice in a row outside the work on any video (is the machine out of "
                    "memory?); not restarting it. Videos finished so far are kept: the same command resumes.")
                return 1
            say(f"vidcurate: the build {how} outside the work on any video; restarting it once")


def restarted() -> bool:
    """Whether this build process is a restart by the supervisor (not the command's first run)."""
    return int(os.environ.get(RESTART_ENV) or 0) > 0


def _on(struck: list[dict]) -> str:
    stages = sorted({s["stage"] for s in struck})
    return " and ".join(stages)


def _run_child(command: list[str], env: dict) -> tuple[int, bool]:
    """The child's exit code, and whether a stop signal (Ctrl-C, SIGTERM, SIGHUP) was passed on to it."""
    supervisor, stopped = os.getpid(), []

    def send(number: int, _frame=None) -> None:
        stopped.append(number)
        if child.poll() is None:
            child.send_signal(number)

    child = subprocess.Popen(command, env=env, preexec_fn=lambda: _child_setup(supervisor))
    forward = {sig: signal.signal(sig, send) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                return child.wait(), bool(stopped)
            except KeyboardInterrupt:  # a handler may not be installed yet on a very early signal
                send(signal.SIGINT)
    finally:
        for sig, previous in forward.items():
            signal.signal(sig, previous)


def _child_setup(supervisor: int) -> None:
    """In the child, before exec: its own process group (Ctrl-C reaches it once, from the
    supervisor) and death with the supervisor; the default SIGINT (a shell may start jobs with it ignored)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != supervisor:  # the supervisor died before prctl took effect
        os._exit(1)
