"""Submitting a build to a Ray cluster as a Ray job (`vidcurate submit`): the job's runtime
environment (this vidcurate's code as py_modules, a working dir holding a local config), a
reachability check of the job server, and following the job's logs to its end.

The command line lives in pipelines/cli/submit.py; this module knows Ray's job API.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from typing import Callable

from vidcurate.pipelines.build.config import ConfigError, bundled_configs, load_config

SHIP_IGNORE = ("__pycache__", "*.pyc", "*.pyo", "tests", ".venv", "out", "*.egg-info", ".git")
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


def package_parts() -> list[str]:
    """The subpackages of the vidcurate namespace (operators, pipelines, schemas, ...), found beside
    vidcurate.pipelines on disk, so a new one is shipped without being listed anywhere. Works for a
    wheel install (vidcurate/<part>/) and an editable one (the repository's top-level folders)."""
    pipelines = importlib.import_module("vidcurate.pipelines")
    parent = os.path.dirname(os.path.dirname(os.path.abspath(pipelines.__file__)))
    parts = []
    for name in sorted(os.listdir(parent)):
        if (os.path.isfile(os.path.join(parent, name, "__init__.py")) and name.isidentifier()
                and importlib.util.find_spec(f"vidcurate.{name}") is not None):
            parts.append(name)
    return parts


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Fail fast (OSError) when nothing listens at the job server's host and port."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number
        raise OSError(str(exc)) from None
    if not parsed.hostname:
        raise OSError(f"no host in {url!r}")
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()


def job_config(config_path: str | None, working_dir: str | None, runner: str, staging: str):
    """The --config argument of the job's command and its working_dir. A local config file is
    checked here; it travels in --working-dir, or alone in a temp working_dir."""
    if config_path is None or config_path in bundled_configs():
        load_config(config_path, runner)
        return config_path, working_dir
    if not os.path.isfile(config_path):
        raise ConfigError(f"config {config_path!r}: no such file, and not a bundled config name "
                          f"({', '.join(bundled_configs())})")
    load_config(config_path, runner)  # refuse a bad config before anything is submitted
    if working_dir:
        relative = os.path.relpath(os.path.realpath(config_path), os.path.realpath(working_dir))
        if relative.startswith(".."):
            raise ConfigError(f"config {config_path!r} is outside --working-dir {working_dir!r}: move it there, "
                              "or omit --working-dir and it is shipped alone")
        return relative, working_dir
    job_dir = os.path.join(staging, "job")
    os.makedirs(job_dir)
    shutil.copyfile(config_path, os.path.join(job_dir, os.path.basename(config_path)))
    return os.path.basename(config_path), job_dir


def stage_package(staging: str) -> str:
    """A copy of the installed vidcurate package (vidcurate/<part> for every part) for
    py_modules: a cluster node without vidcurate imports it from there."""
    root = os.path.join(staging, "package", "vidcurate")
    for part in package_parts():
        source = os.path.dirname(importlib.import_module(f"vidcurate.{part}").__file__)
        shutil.copytree(source, os.path.join(root, part), ignore=shutil.ignore_patterns(*SHIP_IGNORE))
    return root


def follow_job(client, job_id: str, echo: Callable[[str], None] = print, poll: float = 1.0) -> str:
    """Hand the job's logs to ``echo`` as they come until it ends; return its final status."""
    import asyncio
    import time

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            echo(lines)

    asyncio.run(tail())
    while True:  # the log stream can close a moment before the status turns terminal
        status = str(client.get_job_status(job_id))
        if status in TERMINAL_STATES:
            return status
        time.sleep(poll)
