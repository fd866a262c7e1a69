"""The ``vidcurate`` command line: one module per command group, gathered here.

    build.py     build, split, demo, retry-failed
    submit.py    submit (a build as a Ray job)
    info.py      report, ops, config
    bench.py     bench split|shards|ray|teachers
    teachers.py  teachers choose
    versions.py  select, versions, export (caption versions of a finished build)
    synth.py     synth, synth score (a synthetic dataset with known truth)
    retriever.py retriever finetune|eval (the caption-selection retriever)
    annotate.py  annotate, annotate export (the annotation studio)
    refine.py    refine (noise-controlled iterative refinement)
    options.py   the options several commands share, and how a build's outcome becomes an exit code
"""
from __future__ import annotations

import os
import sys

# A build's process is the coordinator: Arrow's jemalloc pool gives freed memory back, where
# mimalloc (pyarrow's default on Linux) kept ~90 MB more at the peak of a 1M-clip close
# (`vidcurate bench coordinator`). Chosen before pyarrow loads; the variable is Arrow's own.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

import click  # noqa: E402

from vidcurate.pipelines.cli import (annotate, bench, build, info, options, refine, retriever, submit, synth,  # noqa: E402
                                     teachers, versions)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidcurate")
def cli() -> None:
    """vidcurate: curate and caption video-text training corpora.

    Splits videos into clips at shot cuts, captions every clip with several teachers
    (speech, metadata, ...), selects one caption per clip and writes WebDataset shards
    with a parquet index and a rejects table. Start with `vidcurate demo`.
    """


for command in (build.build, build.split, build.demo, info.report, info.ops, info.show_config, bench.bench,
                versions.select, versions.versions, versions.export,
                teachers.teachers, build.retry_failed_command, submit.submit, synth.synth, retriever.retriever,
                annotate.annotate, refine.refine):
    cli.add_command(command)


def main() -> None:
    """The ``vidcurate`` program. Only here, in a process of its own, does a build run under its
    supervisor (pipelines/build/supervisor.py); ``cli.main(args)`` in a program runs it in-process."""
    options.PROCESS_ARGV = sys.argv[1:]
    cli(prog_name="vidcurate")
