"""`vidcurate bench ...`: each benchmark in its own module, printing ratios against a baseline
measured in the same run (absolute times drift on shared machines).

    split.py     the splitting stage vs Panda-70M-style tools, the one-pass limit and decode-only
    shards.py    shard writing vs a plain tar write of the same bytes
    teachers.py  a teacher operator in the pipeline vs its model called directly, tokens/s
    runners.py   the same build on local, Ray and Beam: wall time ratios, bytes, memory
    coordinator.py  the coordinator's memory on a build of 1M clips vs holding every row
    memory.py    a process's RSS and peak RSS, as the benchmarks report them
    tiny_models.py  tiny randomly initialised transformers models built locally (benchmarks and tests)
"""
