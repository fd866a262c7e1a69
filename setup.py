"""Packaging glue: pyproject.toml holds the metadata; this finds the packages.

The user's top-level folders install as subpackages of one import package, ``vidcurate``
(``operators/`` is ``vidcurate.operators``, ...). Every package below them is found here, so
adding a subpackage needs no list to be edited (vidcurate submit finds them the same way).
"""
from setuptools import find_packages, setup

ROOTS = ("operators", "pipelines", "schemas")

setup(
    package_dir={f"vidcurate.{root}": root for root in ROOTS},
    packages=[f"vidcurate.{name}" for name in find_packages(include=[f"{root}*" for root in ROOTS])
              if name.split(".")[0] in ROOTS],
)
