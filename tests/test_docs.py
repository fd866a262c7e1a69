"""The README says what the code does: its listings are checked against the code, so they cannot drift."""
from __future__ import annotations

import os
import re
from importlib import resources

import yaml

from vidcurate.schemas.records import INDEX, REJECT

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def test_the_readme_config_lists_the_default_pipeline_in_order():
    section = _readme().split("## Configuration", 1)[1]
    listing = section.split("```yaml", 1)[1].split("```", 1)[0]
    listed = re.findall(r"^\s*- op: (\S+)", listing, re.MULTILINE)
    default = yaml.safe_load(resources.files("vidcurate.pipelines.build.configs").joinpath("default.yaml").read_text())
    assert listed == [step["op"] for step in default["pipeline"]]


def test_the_readme_names_every_index_and_reject_column():
    text = _readme()
    index = text.split("`index.parquet` (schema", 1)[1].split("`rejects.parquet` (schema", 1)[0]
    rejects = text.split("`rejects.parquet` (schema", 1)[1].split("Every input appears", 1)[0]
    for names, described in ((INDEX.names, index), (REJECT.names, rejects)):
        words = set(re.findall(r"[a-z0-9_]+", described))
        assert [n for n in names if n not in words] == []
