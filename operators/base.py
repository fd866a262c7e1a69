"""The operator contract: typed configuration, a lifecycle, declared resources, errors as data.

An operator is a pydantic model whose fields are its configuration (validated on
creation; unknown fields are errors). Its lifecycle is::

    op = SomeOperator(**params)   # validate configuration; cheap, picklable
    op.setup()                    # load models once per worker (heavy imports here)
    out = op(records)             # process one batch: list[dict] -> list[dict]
    op.teardown()                 # free what setup() loaded

``op(records)`` is what every runner calls. It passes already rejected records through
untouched, gives the operator only records whose ``status`` is ``"ok"``, turns a
:class:`RecordError` (or any unexpected exception) into a reject record with the
operator's name as ``stage``, and counts records in/out, rejects by reason and time.
A runner never needs a try/except around an operator, which is what makes Ray Data
(no per-record skip) and Beam behave exactly like the local loop.

Operators implement either ``process_record(record) -> dict | list[dict]`` (one record
in, zero or more out) or, for batched model inference, ``process_batch(records)``.
"""
from __future__ import annotations

import errno
import time
import traceback
from dataclasses import dataclass, replace
from typing import ClassVar, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, PrivateAttr

from vidcurate.operators import crash_ledger, kill_points
from vidcurate.operators.stats import Stats
from vidcurate.schemas.records import is_ok, rejected

# A full disk is the machine's fault, not a record's: it stops the build (which resumes once
# there is space) instead of rejecting every video that meets it.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

__all__ = ["Operator", "OperatorSetupError", "RecordError", "Resources", "is_ok", "reject"]



@dataclass(frozen=True)
class Resources:
    """What one worker of an operator needs. Runners translate this (Ray num_gpus, Beam hints)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0
    batch_size: int = 1

    def __post_init__(self):
        if self.cpus < 0 or self.gpus < 0 or self.memory_gb < 0:
            raise ValueError(f"resources must be >= 0, got {self}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class RecordError(Exception):
    """One record cannot be processed. Becomes a reject, never stops the build.

    ``reason`` is a short stable snake_case code (counted and grouped in reports);
    ``detail`` is the human explanation; ``transient`` marks errors worth retrying
    (network, timeouts) as opposed to bad input.
    """

    def __init__(self, reason: str, detail: str = "", transient: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.transient = transient


class OperatorSetupError(RuntimeError):
    """An operator could not load what it needs (missing package, model not found)."""


def reject(record: dict, stage: str, reason: str, detail: str = "", transient: bool = False) -> dict:
    """A copy of ``record`` marked rejected by ``stage`` (see schemas.records.rejected)."""
    return rejected(record, stage, reason, detail, transient)


class Operator(BaseModel):
    """Base class of every operator. Subclasses set ``name`` and, if needed, ``resources``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: ClassVar[str] = "operator"
    resources: ClassVar[Resources] = Resources()
    # Record fields this operator reads, and fields it adds: a pipeline is checked
    # against these when its config loads, so a missing stage is a config error.
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()

    _stats: Stats = PrivateAttr(default_factory=Stats)
    _ready: bool = PrivateAttr(default=False)

    # ---- lifecycle -------------------------------------------------------------------
    def setup(self) -> None:
        """Load models and open resources, once per worker. Default: nothing to load."""

    def teardown(self) -> None:
        """Free what setup() loaded."""

    # Config fields that, when an operator has them, override its class-level Resources.
    RESOURCE_FIELDS: ClassVar[dict[str, str]] = {"threads": "cpus", "gpus": "gpus", "batch_size": "batch_size"}

    def declared_resources(self) -> Resources:
        """Resources of this configured instance: the class's, with any ``threads`` (cpus), ``gpus``
        or ``batch_size`` configuration field of the operator taking precedence."""
        fields = type(self).model_fields
        overrides = {res: getattr(self, name) for name, res in self.RESOURCE_FIELDS.items() if name in fields}
        return replace(self.resources, **overrides) if overrides else self.resources

    # ---- work ------------------------------------------------------------------------
    def process_record(self, record: dict) -> dict | list[dict]:
        raise NotImplementedError(f"{type(self).__name__} implements neither process_record nor process_batch")

    def process_batch(self, records: list[dict]) -> list[dict]:
        out: list[dict] = []
        for record in records:
            out.extend(self._guarded_record(record))
        return out

    # ---- what runners call -----------------------------------------------------------
    @property
    def stats(self) -> Stats:
        return self._stats

    def ensure_setup(self) -> None:
        if not self._ready:
            started = time.perf_counter()
            self.setup()
            self._stats.add_time(f"{self.name}.setup", time.perf_counter() - started)
            self._ready = True

    def close(self) -> None:
        if self._ready:
            self.teardown()
            self._ready = False

    def is_stateful(self) -> bool:
        """Whether it holds what setup() loaded (models) or GPUs: runners then keep one instance
        alive across batches (on Ray: an actor) instead of a fresh one per batch (a task)."""
        return type(self).setup is not Operator.setup or self.declared_resources().gpus > 0

    def stream(self, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
        """Call the operator on full batches of its declared size as records arrive; the rest at
        the end. ``progress`` (anything with ``advance(name, ok_in, ok_out, seconds=)``) is told
        after every batch."""
        size = self.declared_resources().batch_size
        pending: list[dict] = []
        for batch in batches:
            pending.extend(batch)
            first = 0
            while len(pending) - first >= size:
                yield self._call_reporting(pending[first:first + size], progress)
                first += size
            del pending[:first]
        if pending:
            yield self._call_reporting(pending, progress)

    def _call_reporting(self, batch: list[dict], progress) -> list[dict]:
        if progress is None:
            return self(batch)
        started = time.perf_counter()
        done = self(batch)
        # ok records only, as the operator's own records_in / records_out counters
        progress.advance(self.name, sum(1 for r in batch if is_ok(r)), sum(1 for r in done if is_ok(r)),
                         seconds=time.perf_counter() - started)
        return done

    def __call__(self, records: Iterable[dict]) -> list[dict]:
        self.ensure_setup()
        records = list(records)
        passthrough = [r for r in records if not is_ok(r)]
        todo = [r for r in records if is_ok(r)]
        self._stats.incr(f"{self.name}.records_in", len(todo))
        started = time.perf_counter()
        out = self._watched(todo) if todo else []
        self._stats.add_time(f"{self.name}.process", time.perf_counter() - started)
        for record in out:
            if is_ok(record):
                self._stats.incr(f"{self.name}.records_out")
            elif record.get("error_stage") == self.name:
                self._stats.incr(f"{self.name}.rejected.{record['error_reason']}")
        return passthrough + out

    # ---- failure handling ------------------------------------------------------------
    def _watched(self, records: list[dict]) -> list[dict]:
        """``records`` through the operator with the crash ledger told which videos it is on
        (operators/crash_ledger.py): videos that were on a process when it died are worked on
        alone, and set aside once they have killed ``MAX_STRIKES`` processes."""
        ledger = crash_ledger.active()
        if ledger is None:
            kill_points.worker_reached(self.name, records)
            return self._guarded_batch(records)
        ledger.harvest()
        strikes = ledger.strikes()
        out, groups = [], [records]
        if any(strikes[r.get("uri")] for r in records):
            poison = [r for r in records if strikes[r.get("uri")] >= crash_ledger.MAX_STRIKES]
            out = [self._set_aside(r, ledger) for r in poison]
            groups = crash_ledger.alone_if_struck(
                [r for r in records if strikes[r.get("uri")] < crash_ledger.MAX_STRIKES], strikes)
            self._stats.incr(f"{self.name}.worked_alone_after_a_crash", sum(len(g) for g in groups[1:]))
        for group in groups:
            if not group:
                continue
            ledger.busy(self.name, [r["uri"] for r in group if r.get("uri")])
            try:
                kill_points.worker_reached(self.name, group)
                out.extend(self._guarded_batch(group))
            finally:
                ledger.idle()
        return out

    def _set_aside(self, record: dict, ledger) -> dict:
        stages = ledger.stages(record["uri"])
        where = ", ".join(dict.fromkeys(stages)) or self.name
        # transient: an out-of-memory death may not recur, and `vidcurate retry-failed` gives it a fresh try
        return reject(record, stages[-1] if stages else self.name, "worker_crashed",
                      f"{record['uri']}: the process working on it died {len(stages)} times (in {where}): a crash "
                      "in native code or out of memory; set aside so the build goes on", transient=True)

    def fail(self, record: dict, reason: str, detail: str = "", transient: bool = False) -> dict:
        return reject(record, self.name, reason, detail, transient)

    def _guarded_record(self, record: dict) -> list[dict]:
        try:
            result = self.process_record(record)
        except RecordError as exc:
            return [self.fail(record, exc.reason, exc.detail, exc.transient)]
        except OSError as exc:
            if exc.errno in DISK_FULL:  # the machine's fault, not the record's: the build stops
                raise
            return [self.fail(record, "unexpected_error", _describe(exc))]
        except Exception as exc:  # a bug or an unforeseen input: keep it as data, with the trace
            return [self.fail(record, "unexpected_error", _describe(exc))]
        if result is None:
            return []
        return result if isinstance(result, list) else [result]

    def _guarded_batch(self, records: list[dict]) -> list[dict]:
        try:
            return self.process_batch(records)
        except RecordError as exc:
            if len(records) == 1:
                return [self.fail(records[0], exc.reason, exc.detail, exc.transient)]
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise
            if len(records) == 1:
                return [self.fail(records[0], "unexpected_error", _describe(exc))]
        except Exception as exc:
            if len(records) == 1:
                return [self.fail(records[0], "unexpected_error", _describe(exc))]
        # A batch failed as a whole: retry one record at a time so only the culprit is rejected.
        self._stats.incr(f"{self.name}.batch_retried_per_record")
        out: list[dict] = []
        for record in records:
            out.extend(self._guarded_batch([record]))
        return out


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
