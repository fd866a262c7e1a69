"""``python -m vidcurate.pipelines.cli``: the same command line as ``vidcurate``."""
from vidcurate.pipelines.cli import main

main()
