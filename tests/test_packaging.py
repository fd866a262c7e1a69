"""The wheel holds every module of every subpackage, and its package data (configs, templates, static files).

Built as a real wheel (not the editable install the tests run from), unpacked, and imported
from there in a fresh interpreter: a subpackage setup.py failed to find, or a data file
pyproject.toml does not declare, fails here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTS = ("operators", "pipelines", "schemas")

IMPORT_EVERY_MODULE = """
import importlib, os, pkgutil, sys
wheel_dir = sys.argv[1]
names = []
for root in sys.argv[2:]:
    package = importlib.import_module("vidcurate." + root)
    names.append(package.__name__)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
              if not m.name.endswith(".__main__")]  # __main__ runs the command line
outside = []
for name in names:
    module = importlib.import_module(name)
    if not os.path.abspath(module.__file__).startswith(wheel_dir):
        outside.append(f"{name}: {module.__file__}")
print("MODULES", len(names))
if outside:
    sys.exit("imported from outside the wheel: " + "; ".join(outside))
from vidcurate.pipelines.build.config import bundled_configs, load_config
assert "default" in bundled_configs(), bundled_configs()
load_config()
"""


def _source_modules() -> set[str]:
    found = set()
    for root in ROOTS:
        for folder, _, files in os.walk(os.path.join(ROOT, root)):
            if "__pycache__" in folder:
                continue
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)
                    found.add("vidcurate/" + rel.replace(os.sep, "/"))
    return found


@pytest.mark.slow
def test_the_wheel_holds_and_imports_every_module(tmp_path):
    # Built from a clean copy: an in-tree build/ folder of an earlier build would hide a missing package.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache")

    def ignore(folder, names):
        return set(skip(folder, names)) | ({"build", "out"} & set(names) if folder == ROOT else set())

    shutil.copytree(ROOT, source, ignore=ignore)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [wheel] = [p for p in os.listdir(tmp_path / "dist") if p.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / "dist" / wheel) as archive:
        members = set(archive.namelist())
        archive.extractall(tmp_path / "unpacked")
    missing = sorted(_source_modules() - members)
    assert not missing, f"modules left out of the wheel: {missing}"
    assert any(m.startswith("vidcurate/pipelines/build/configs/") and m.endswith(".yaml") for m in members)
    # the annotation page's templates, script and style
    assert {"vidcurate/pipelines/annotate/templates/annotate.html.j2", "vidcurate/pipelines/annotate/static/annotate.js",
            "vidcurate/pipelines/annotate/static/annotate.css"} <= members
    unpacked = str(tmp_path / "unpacked")
    env = {**os.environ, "PYTHONPATH": unpacked}
    imported = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE, unpacked, *ROOTS], capture_output=True,
                              text=True, timeout=600, cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr[-3000:]
    count = int(imported.stdout.split("MODULES ", 1)[1].split()[0])
    assert count >= len([m for m in _source_modules() if not m.endswith("__main__.py")]) - 1
