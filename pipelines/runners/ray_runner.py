"""The Ray runner: the pipeline on Ray Data, on one machine or a cluster.

Each operator becomes one ``map_batches`` stage. Operators that load something in
``setup()`` (models) or ask for GPUs run as a pool of callable-class actors
(``ActorPoolStrategy(min_size=1, max_size=run.max_actors)``): setup once per actor,
then batch after batch. The others run as Ray tasks. The operator's declared
``Resources`` become ``num_cpus`` / ``num_gpus`` (fractions allowed) / ``memory``.

A row is one source video: ``uri`` and ``payload``, the pickled list of that video's
records (its clips with their mp4 bytes, or its rejects). Whole videos travel together,
so the driver hands the sink complete videos (same shard writer, journal and resume as
the local runner, which instead streams a long video's clips a batch at a time), and
teachers still batch across the clips of several videos. The price: one row holds all
clips of its video, so a very long video is held whole in the object store (which spills
to disk) rather than streamed. Ray Data streams: a video's decoded frames never leave the worker that decoded
them, and only a few videos' clips are in flight per stage (backpressure), so the object
store holds mp4 bytes of a handful of videos at a time.

Errors stay data (the operator contract turns exceptions into reject records). A worker
that dies (OOM, a crashed native library, a lost node) is retried by Ray: tasks up to
``max_retries`` times, actors restarted, and since a video's records are only emitted
once its last stage finished, a retry never duplicates a sample.
"""
from __future__ import annotations

import copy
import logging
import os
import pickle
import sys
import time
from typing import Iterable

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.stats import Stats
from vidcurate.pipelines.runners.local import Emit

log = logging.getLogger(__name__)

TASK_RETRIES = 3


def needs_actor(op) -> bool:
    """Operators holding state from setup() (models) or GPUs run as actors; the rest as tasks."""
    if isinstance(op, FusedStages):
        return any(needs_actor(child) for child in op.operators)
    if not isinstance(op, Operator):  # the stage cache: tasks (decode scales with CPUs) unless it holds a GPU op
        return any(child.declared_resources().gpus > 0 for child in getattr(op, "operators", []))
    return type(op).setup is not Operator.setup or op.declared_resources().gpus > 0


def _delta(after: Stats, before: Stats) -> Stats:
    out = Stats()
    out.counters.update({k: v - before.counters.get(k, 0) for k, v in after.counters.items()
                         if v != before.counters.get(k, 0)})
    out.seconds.update({k: v - before.seconds.get(k, 0.0) for k, v in after.seconds.items()
                        if v != before.seconds.get(k, 0.0)})
    return out


def _apply(op, table):
    """One batch of video rows through ``op``. The first output row carries the stats of every
    stage so far for these videos (a list of Stats dicts), which the driver merges."""
    import pyarrow as pa

    from vidcurate.pipelines.runners.local import run_operator

    uris = table.column("uri").to_pylist()
    videos = [pickle.loads(p) for p in table.column("payload").to_pylist()]
    carried = [d for blob in (table.column("stats").to_pylist() if "stats" in table.column_names else [])
               if blob for d in pickle.loads(blob)]
    before = copy.deepcopy(op.stats)
    records = run_operator(op, [r for video in videos for r in video])
    by_uri: dict[str, list] = {uri: [] for uri in uris}
    for record in records:
        by_uri.setdefault(record["uri"], []).append(record)
    stats = pickle.dumps([*carried, _delta(op.stats, before).to_dict()])
    return pa.table({
        "uri": pa.array(list(by_uri), pa.string()),
        "payload": pa.array([pickle.dumps(v, protocol=5) for v in by_uri.values()], pa.large_binary()),
        "stats": pa.array([stats if i == 0 else b"" for i in range(len(by_uri))], pa.large_binary()),
    })


def _run_task(table, op):
    op.ensure_setup()
    return _apply(op, table)


class _OperatorActor:
    def __init__(self, op):
        self.op = op
        self.op.ensure_setup()  # models load once per actor

    def __call__(self, table):
        return _apply(self.op, table)


class FusedStages:
    """Consecutive CPU operators run as one Ray stage: one process per video batch goes
    through all of them (as Ray Data fuses consecutive tasks), so models are imported and
    loaded once per worker instead of once per stage, and no stage waits for another's
    workers. GPU operators are never fused: each keeps its own actor pool."""

    def __init__(self, operators: list):
        self.operators = operators
        self.name = "+".join(op.name for op in operators)
        self._ready = False

    def declared_resources(self) -> Resources:
        return Resources(cpus=max(op.declared_resources().cpus for op in self.operators), batch_size=1 << 30)

    def ensure_setup(self) -> None:
        for op in self.operators:
            op.ensure_setup()

    def close(self) -> None:
        for op in self.operators:
            op.close()

    @property
    def stats(self) -> Stats:
        merged = Stats()
        for op in self.operators:
            merged.merge(op.stats)
        return merged

    def __call__(self, records: list[dict]) -> list[dict]:
        from vidcurate.pipelines.runners.local import run_operator

        for op in self.operators:
            records = run_operator(op, records)
        return records


def plan_stages(operators: list, fuse_cpu: bool = True) -> list:
    """The Ray stages: each GPU operator alone; runs of CPU operators fused (or one stage each)."""
    if not fuse_cpu:
        return list(operators)
    stages, run = [], []
    for op in operators:
        if op.declared_resources().gpus > 0:
            if run:
                stages.append(run[0] if len(run) == 1 else FusedStages(run))
                run = []
            stages.append(op)
        else:
            run.append(op)
    if run:
        stages.append(run[0] if len(run) == 1 else FusedStages(run))
    return stages


class RayRunner:
    def __init__(self, operators: list, videos_per_batch: int = 1, address: str | None = None,
                 max_actors: int = 2, num_cpus: int | None = None, progress: bool | None = None,
                 fuse_cpu_stages: bool = True):
        self.operators = operators
        self.stages = plan_stages(operators, fuse_cpu_stages)
        self.videos_per_batch = videos_per_batch
        self.address = address
        self.max_actors = max_actors
        self.num_cpus = num_cpus
        self.progress = progress
        self._stats = Stats()

    def run(self, sources: Iterable[dict], emit: Emit) -> Stats:
        import ray

        started_here = not ray.is_initialized()
        clock = time.perf_counter()
        if started_here:
            # "local" always starts a private instance: never join another build's Ray that
            # happens to run on this machine (ray.init() without an address would).
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, num_cpus=self.num_cpus if address == "local" else None,
                     include_dashboard=False, logging_level=logging.WARNING, configure_logging=True)
        self._stats.add_time("ray.init", time.perf_counter() - clock)
        try:
            sources = list(sources)
            if sources:
                clock = time.perf_counter()
                self._execute(sources, emit)
                self._stats.add_time("ray.execute", time.perf_counter() - clock)
        finally:
            if started_here:
                clock = time.perf_counter()
                ray.shutdown()
                self._stats.add_time("ray.shutdown", time.perf_counter() - clock)
        return self.stats()

    def _execute(self, sources: list[dict], emit) -> None:
        import ray
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = sys.stderr.isatty() if self.progress is None else bool(self.progress)
        # One video per block: stages start on the first video, and no all-to-all step waits for all.
        ds = ray.data.from_items([{"uri": s["uri"], "payload": pickle.dumps([s], protocol=5)} for s in sources],
                                 override_num_blocks=len(sources))
        scale = self._cpu_scale()
        total_cpus = ray.cluster_resources().get("CPU", 1.0)
        cpu_actor_stages = [s for s in self.stages if needs_actor(s) and not s.declared_resources().gpus]
        task_cpus = max((s.declared_resources().cpus for s in self.stages if not needs_actor(s)), default=0.0)
        cpu_share = max(total_cpus - task_cpus, 0.0) / max(1, len(cpu_actor_stages))
        for op in self.stages:
            res = op.declared_resources()
            # Decode tasks take one video each (parallelism); model actors take several, so a
            # teacher batches the clips of several videos.
            args = {"batch_size": self.videos_per_batch if res.gpus else 1,
                    "batch_format": "pyarrow", "zero_copy_batch": True,
                    "num_gpus": res.gpus or None, **({"memory": res.memory_gb * 2**30} if res.memory_gb else {})}
            if needs_actor(op):
                # GPU stages: up to run.max_actors; CPU stages: their share of the CPUs that tasks
                # leave free (actors hold their CPUs: taking all would starve the tasks).
                most = self.max_actors if res.gpus else max(1, int(cpu_share // max(res.cpus * scale, 0.01)))
                most = min(most, len(sources))  # never more actors than videos
                ds = ds.map_batches(_OperatorActor, fn_constructor_kwargs={"op": op},
                                    compute=ActorPoolStrategy(min_size=1, max_size=most),
                                    num_cpus=res.cpus * scale, max_restarts=-1, max_task_retries=-1, **args)
            else:
                ds = ds.map_batches(_run_task, fn_kwargs={"op": op}, num_cpus=res.cpus,
                                    max_retries=TASK_RETRIES, **args)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1):
            for uri, payload, stats in zip(batch.column("uri").to_pylist(), batch.column("payload").to_pylist(),
                                           batch.column("stats").to_pylist()):
                for part in pickle.loads(stats) if stats else []:
                    self._stats.merge(Stats.from_dict(part))
                emit(pickle.loads(payload), [uri])  # a row is a whole video

    def _cpu_scale(self) -> float:
        """Shrink actor CPU requests when the cluster cannot hold one actor per model stage and
        still run the largest task: actors keep their CPUs, so otherwise the decode tasks wait
        forever (on a 2-CPU laptop three CPU teachers would take everything)."""
        import ray

        total = ray.cluster_resources().get("CPU", 1.0)
        actors = [op for op in self.stages if needs_actor(op)]
        tasks = [op for op in self.stages if not needs_actor(op)]
        wanted = sum(op.declared_resources().cpus for op in actors)
        room = total - max((op.declared_resources().cpus for op in tasks), default=0.0)
        if wanted <= room * 0.9:
            return 1.0
        scale = max(room * 0.9, 0.1 * len(actors)) / wanted
        log.warning("the Ray cluster has %.0f CPUs; model stages ask for %.1f besides %.1f for tasks: scaling "
                    "their CPU requests by %.2f so every stage can run", total, wanted, total - room, scale)
        return scale

    def stats(self) -> Stats:
        return self._stats
