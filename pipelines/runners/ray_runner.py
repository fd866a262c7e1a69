"""The Ray runner: the pipeline on Ray Data, on one machine or a cluster.

Each operator becomes one ``map_batches`` stage. Operators that load something in
``setup()`` (models) or ask for GPUs run as a pool of callable-class actors
(``ActorPoolStrategy(min_size=1, max_size=run.max_actors)``): setup once per actor,
then batch after batch. The others run as Ray tasks. The operator's declared
``Resources`` become ``num_cpus`` / ``num_gpus`` (fractions allowed) / ``memory``.

A row is a part of one source video: ``uri``, ``payload`` (the pickled list of some of
its records: clips with their mp4 bytes, or rejects), ``row`` (an id) and ``weight``. The
first stage gets one row per video with weight 1; every stage streams its output as the
operators' batches come out, so a long video leaves the extraction step a batch of clips
at a time and a worker holds about one batch, not the whole video (Ray Data gathers the
parts into blocks of bounded size and spills the object store to disk). A row's parts
carry weights that sum to its own (see ``_apply``), so the driver knows a video is
complete when the weights of its parts sum to 1: only then does the sink commit it (same
journal and resume as the local runner). The last stage is the build's sample writer, as
tasks of ``rows_per_write()`` rows each: a task writes its rows' clips into shards on its
worker, publishes them, and returns only their metadata, so no mp4 byte reaches the driver
(``ray.driver_bytes`` counts what does). Teachers still batch across the
clips of several rows. Ray Data streams: a video's decoded frames never leave the worker
that decoded them, and only a few rows are in flight per stage (backpressure).

Errors stay data (the operator contract turns exceptions into reject records). A worker
that dies (OOM, a crashed native library, a lost node) is retried by Ray with Ray Data's
defaults: a task up to 3 times (Ray's ``max_retries``), an actor restarted without limit
and its calls retried (``max_restarts=-1``, ``max_task_retries=-1``). A retried call
yields the same parts with the same row ids (processing is deterministic), so parts the
driver already has are dropped and a retry never duplicates a sample: a retried writer
task writes its shards under new names, and the copies whose metadata was dropped are
removed by the sink's repair when the build closes.
"""
from __future__ import annotations

import copy
import logging
import os
import pickle
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Iterable, Iterator

from vidcurate.operators.base import Resources
from vidcurate.operators.stats import Stats
from vidcurate.pipelines.runners.base import Emit, stream_stages

log = logging.getLogger(__name__)


def _apply(op, table) -> Iterator:
    """A batch of rows through ``op``, streaming: output rows leave as the operator's batches
    come out, so a worker holds about one batch of clips whatever the video's length.

    Each input row's records come out as one or more rows (its parts). A part carries the
    ``weight`` of its row split so that the parts sum to it, whatever their number, which
    is known only at the end: a row's parts before its last get half of what is left, the
    last gets the rest. So the driver knows a video is complete when its weights sum to 1.
    A part's ``row`` id extends its parent's, so rows a retried task sends twice are
    recognised. The last row of the call carries the stats of every stage so far for these
    rows (a list of Stats dicts), which the driver merges."""
    import pyarrow as pa

    rows = [RowPart(uri, row_id, Fraction(weight)) for uri, row_id, weight in
            zip(table.column("uri").to_pylist(), table.column("row").to_pylist(),
                table.column("weight").to_pylist())]
    carried = [d for blob in table.column("stats").to_pylist() if blob for d in pickle.loads(blob)]
    owner: dict[str, int] = {}  # clip_id or uri -> index of the input row holding it
    records: list[dict] = []
    for i, payload in enumerate(table.column("payload").to_pylist()):
        for record in pickle.loads(payload):
            if record.get("clip_id"):
                owner.setdefault(record["clip_id"], i)
            owner.setdefault(record["uri"], i)
            records.append(record)
    before = copy.deepcopy(op.stats)

    def table_of(parts: list[tuple[RowPart, list[dict]]], stats: bytes = b""):
        return pa.table({
            "uri": pa.array([part.uri for part, _ in parts], pa.string()),
            "row": pa.array([part.row for part, _ in parts], pa.string()),
            "weight": pa.array([str(part.weight) for part, _ in parts], pa.string()),
            "payload": pa.array([pickle.dumps(out, protocol=5) for _, out in parts], pa.large_binary()),
            "stats": pa.array([stats if i == len(parts) - 1 else b"" for i in range(len(parts))], pa.large_binary()),
        })

    held: dict[int, list[dict]] = {}  # each input row's latest output, sent once a newer one exists
    for batch in stream_stages([op], [records]):  # fused stages and the stage cache stream themselves
        grouped: dict[int, list[dict]] = {}
        for record in batch:
            i = owner.get(record.get("clip_id"), owner.get(record["uri"], 0))
            grouped.setdefault(i, []).append(record)
        ready = [(rows[i].next_part(), held[i]) for i in grouped if i in held]
        held.update(grouped)
        if ready:
            yield table_of(ready)
    stats = pickle.dumps([*carried, op.stats.since(before).to_dict()])
    yield table_of([(row.last_part(), held.get(i, [])) for i, row in enumerate(rows)], stats)


@dataclass
class RowPart:
    """An input row being cut into parts: ``next_part`` halves what is left, ``last_part`` takes it."""
    uri: str
    row: str
    weight: Fraction
    parts: int = 0

    def next_part(self) -> "RowPart":
        self.weight /= 2
        return self._part(self.weight)

    def last_part(self) -> "RowPart":
        return self._part(self.weight)

    def _part(self, weight: Fraction) -> "RowPart":
        self.parts += 1
        return RowPart(self.uri, f"{self.row}.{self.parts - 1}", weight)


def _run_task(table, op):
    op.ensure_setup()
    yield from _apply(op, table)


class _OperatorActor:
    def __init__(self, op):
        self.op = op
        self.op.ensure_setup()  # models load once per actor

    def __call__(self, table):
        yield from _apply(self.op, table)


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
        return Resources(cpus=max(op.declared_resources().cpus for op in self.operators))

    def is_stateful(self) -> bool:
        return any(op.is_stateful() for op in self.operators)

    def ensure_setup(self) -> None:
        for op in self.operators:
            op.ensure_setup()

    def close(self) -> None:
        for op in self.operators:
            op.close()

    @property
    def stats(self) -> Stats:
        return Stats.total(op.stats for op in self.operators)

    def stream(self, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
        """``batches`` through every fused operator in turn, lazily, as the local runner chains them."""
        return stream_stages(self.operators, batches, progress)


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


@dataclass(frozen=True)
class CpuPlan:
    """How a cluster's CPUs are shared between task stages and actor pools.

    Actors keep their CPUs while they live, so actor requests are scaled down
    (``actor_scale``) when the cluster cannot hold one actor per model stage and still run
    the largest task; otherwise the decode tasks would wait forever (on a 2-CPU laptop three
    CPU teachers would take everything). Each CPU-only actor pool may then grow into an
    equal share of the CPUs the tasks leave free (``pool_cpus``)."""

    actor_scale: float
    pool_cpus: float

    def actors_per_pool(self, cpus_per_actor: float) -> int:
        """The most actors of a CPU-only pool, each asking for ``cpus_per_actor`` (unscaled); at least one."""
        return max(1, int(self.pool_cpus // max(cpus_per_actor * self.actor_scale, 0.01)))


def plan_cpus(stages: list, total_cpus: float) -> CpuPlan:
    actors = [s for s in stages if s.is_stateful()]
    task_cpus = max((s.declared_resources().cpus for s in stages if not s.is_stateful()), default=0.0)
    room = total_cpus - task_cpus
    wanted = sum(s.declared_resources().cpus for s in actors)
    scale = 1.0
    if wanted > room * 0.9:
        scale = max(room * 0.9, 0.1 * len(actors)) / wanted
        log.warning("the Ray cluster has %.0f CPUs; model stages ask for %.1f besides %.1f for tasks: scaling "
                    "their CPU requests by %.2f so every stage can run", total_cpus, wanted, task_cpus, scale)
    cpu_pools = [s for s in actors if not s.declared_resources().gpus]
    return CpuPlan(actor_scale=scale, pool_cpus=max(room, 0.0) / max(1, len(cpu_pools)))


class RayRunner:
    draws_progress: ClassVar[bool] = True  # Ray Data's own bars

    def __init__(self, operators: list, videos_per_batch: int = 1, address: str | None = None,
                 max_actors: int = 2, num_cpus: int | None = None, progress: bool | None = None,
                 fuse_cpu_stages: bool = True, writer=None):
        self.operators = operators
        # The sample writer runs as the last task stage, one call per bundle of rows, so shards are
        # written on the workers holding the clips and the driver receives only their metadata.
        self.writer = writer.per_call() if writer is not None else None
        self.stages = plan_stages(operators, fuse_cpu_stages)
        self.videos_per_batch = videos_per_batch
        self.address = address
        self.max_actors = max_actors
        self.num_cpus = num_cpus
        self.progress = progress
        self._stats = Stats()

    @classmethod
    def from_config(cls, stages: list, run, progress=None, writer=None) -> "RayRunner":
        """``progress``: the build's display; only whether it is on matters (Ray Data draws the bars)."""
        enabled = None if progress is None else getattr(progress, "requested", None)
        return cls(stages, run.videos_per_chunk, run.ray_address, run.max_actors, progress=enabled,
                   fuse_cpu_stages=run.fuse_cpu_stages, writer=writer)

    def rows_per_write(self) -> int:
        """Rows (parts of videos, each about one batch of the last stage's clips) per writer call:
        enough to fill a shard, at most 64 (a call holds its rows' clips in memory)."""
        clips_per_row = max(1, self.operators[-1].declared_resources().batch_size) if self.operators else 1
        return max(1, min(64, self.writer.options.shard_max_samples // clips_per_row))

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
        ds = ray.data.from_items([{"uri": s["uri"], "row": str(i), "weight": "1", "stats": b"",
                                   "payload": pickle.dumps([s], protocol=5)} for i, s in enumerate(sources)],
                                 override_num_blocks=len(sources))
        cpus = plan_cpus(self.stages + ([self.writer] if self.writer is not None else []),
                         ray.cluster_resources().get("CPU", 1.0))
        for op in self.stages:
            res = op.declared_resources()
            # Decode tasks take one video each (parallelism); model actors take several, so a
            # teacher batches the clips of several videos.
            args = {"batch_size": self.videos_per_batch if res.gpus else 1,
                    "batch_format": "pyarrow", "zero_copy_batch": True,
                    "num_gpus": res.gpus or None, **({"memory": res.memory_gb * 2**30} if res.memory_gb else {})}
            if op.is_stateful():
                # GPU stages: up to run.max_actors; CPU stages: their share of the CPUs that tasks
                # leave free (actors hold their CPUs: taking all would starve the tasks).
                most = self.max_actors if res.gpus else cpus.actors_per_pool(res.cpus)
                most = min(most, len(sources))  # never more actors than videos
                ds = ds.map_batches(_OperatorActor, fn_constructor_kwargs={"op": op},
                                    compute=ActorPoolStrategy(min_size=1, max_size=most),
                                    num_cpus=res.cpus * cpus.actor_scale, **args)
            else:
                ds = ds.map_batches(_run_task, fn_kwargs={"op": op}, num_cpus=res.cpus, **args)
        if self.writer is not None:
            ds = ds.map_batches(_run_task, fn_kwargs={"op": self.writer}, batch_size=self.rows_per_write(),
                                batch_format="pyarrow", zero_copy_batch=True,
                                num_cpus=self.writer.declared_resources().cpus)
        # Per unfinished video: the weight of its parts received so far, and which parts; a finished
        # video keeps only its uri (the driver's memory grows with videos, not clips).
        received: dict[str, Fraction] = {}
        parts: dict[str, set] = {}
        finished: set[str] = set()
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1):
            for uri, row, weight, payload, stats in zip(*(batch.column(name).to_pylist() for name in
                                                         ("uri", "row", "weight", "payload", "stats"))):
                if uri in finished or row in parts.get(uri, ()):  # sent again by a retried task
                    self._stats.incr("ray.repeated_parts_dropped")
                    continue
                parts.setdefault(uri, set()).add(row)
                for part in pickle.loads(stats) if stats else []:
                    self._stats.merge(Stats.from_dict(part))
                received[uri] = received.get(uri, Fraction(0)) + Fraction(weight)
                self._stats.incr("ray.parts")
                self._stats.incr("ray.driver_bytes", len(payload) + len(stats or b""))
                done = received[uri] == 1
                if done:
                    finished.add(uri)
                    del received[uri], parts[uri]
                emit(pickle.loads(payload), [uri] if done else [])

    def stats(self) -> Stats:
        return self._stats
