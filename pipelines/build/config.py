"""Build configuration: a YAML file of ordered operators with parameters, plus output and run sections.

    pipeline:                 # ordered; each step names an operator and sets its fields
      - op: probe
      - op: split_shots
        threshold: 25
    output:                   # how the dataset is written
      shard_max_samples: 1000
    run:                      # how the build runs
      max_failure_ratio: 0.5

Every problem raises :class:`ConfigError` naming the file, the step and the field. A config is
checked whole: the error lists every bad field of every step and section, one line each, so a
user fixes a file in one round instead of one error per run.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from importlib import resources
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vidcurate.operators.base import Operator
from vidcurate.pipelines.build.registry import OPERATORS, operator_class
from vidcurate.schemas.manifest import METADATA_MAX_CHARS

DEFAULT_CONFIG = "default"


class ConfigError(ValueError):
    """A config that cannot be used; the message has one line per problem."""


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shard_prefix: str = Field("shard", pattern=r"^[A-Za-z0-9_-]+$")
    shard_max_samples: int = Field(1000, ge=1, description="Samples per shard at most.")
    shard_max_bytes: int = Field(1 << 30, ge=1024, description="Bytes per shard at most (one sample may exceed it).")
    require_caption: bool = Field(True, description="Samples need a selected caption (false for split-only runs).")
    open_shards: int = Field(4, ge=1, le=256, description="Shards filled at once per split/bucket; a video's clips "
                             "spread over them (1 = shards in arrival order, a video's clips together).")
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.98, "validation": 0.01, "test": 0.01},
                                     description="Split name -> share of source videos (every clip of a video "
                                     "goes to the same split).")
    split_seed: int = Field(0, description="Changes which videos land in which split.")
    extra_members: list[Literal["keyframes", "audio", "embedding"]] = Field(
        default_factory=list, description="Also store each clip's keyframes (kf0.jpg, ...), 16 kHz audio (wav) "
        "and the splitter's mean frame embedding (npy).")
    bucket_by: list[Literal["resolution", "aspect", "duration"]] = Field(
        default_factory=list, description="Group shards by clip shape: shards/<split>/<bucket>/...")
    metadata_max_chars: int = Field(METADATA_MAX_CHARS, ge=1, description="A title, description or subtitles longer than "
                                    "this is cut when read (every clip's json and the journal copy it); the "
                                    "json's source.truncated gives the original length.")

    @field_validator("splits")
    @classmethod
    def _splits_positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(share < 0 for share in value.values()) or sum(value.values()) <= 0:
            raise ValueError("splits need at least one name with a positive share, e.g. {train: 0.98, test: 0.02}")
        bad = [name for name in value if not name.replace("-", "").replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"split names must be letters, digits, - or _: {bad}")
        return value


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runner: str = Field("local", description="Execution engine: one of the registered runners "
                        "(pipelines/runners/__init__.py): local, ray, beam.")
    ray_address: Optional[str] = Field(None, description="Ray cluster to join (default: RAY_ADDRESS, else a local "
                                       "Ray instance started for the build).")
    max_actors: int = Field(2, ge=1, description="Ray: most actors per GPU stage (the pool autoscales from 1); "
                            "CPU stages get as many as the cluster's CPUs hold.")
    fuse_cpu_stages: bool = Field(True, description="Ray: run consecutive CPU operators as one stage (models load "
                                  "once per worker); false = one Ray stage per operator.")
    beam_options: list[str] = Field(default_factory=list, description="Beam: PipelineOptions flags, e.g. "
                                    "['--runner=FlinkRunner', '--flink_master=host:8081'] (default: FnApiRunner "
                                    "in the build's process).")
    videos_per_chunk: int = Field(4, ge=1, description="Source videos taken through the pipeline together.")
    max_failure_ratio: float = Field(0.5, ge=0, le=1,
                                     description="Stop when more than this share of inputs yields no sample.")
    failure_ratio_min_inputs: int = Field(8, ge=1,
                                          description="Inputs processed before the failure ratio is checked mid-build.")
    cache_after: Optional[str] = Field(
        "extract_clips", description="Keep each video's records after this step in OUT/_cache so a build that "
        "changes only later steps (teachers, selector) does not decode videos again; null disables.")

    @field_validator("runner")
    @classmethod
    def _registered_runner(cls, value: str) -> str:
        from vidcurate.pipelines.runners import runner_names

        if value not in runner_names():
            raise ValueError(f"unknown runner {value!r}; one of: {', '.join(runner_names())}")
        return value


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipeline: list[dict]
    output: OutputConfig = Field(default_factory=OutputConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    source: Optional[str] = Field(None, exclude=True)

    def operators(self) -> list[Operator]:
        ops = build_operators(self.pipeline, self.source)
        check_fields_flow(ops, self.source, self.output.require_caption)
        return ops

    def with_step_fields(self, op: str, **fields) -> "BuildConfig":
        """A copy where every step of operator ``op`` has ``fields`` set (unset values ignored)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        steps = [{**step, **fields} if step.get("op") == op else step for step in self.pipeline]
        return self.model_copy(update={"pipeline": steps})

    def resolved(self, operators: list[Operator] | None = None) -> dict:
        """The configuration with every default filled in, as written beside the outputs."""
        ops = operators if operators is not None else self.operators()
        return {
            "pipeline": [{"op": op.name, **op.model_dump(mode="json")} for op in ops],
            "output": self.output.model_dump(mode="json"),
            "run": self.run.model_dump(mode="json"),
        }

    def digest(self, resolved: dict | None = None) -> str:
        """Hash of what decides the dataset: the resolved pipeline and output sections (pass the
        resolved config when already computed). How it runs (``run``: runner, chunking, failure
        budget) is left out, so a build started locally can be resumed on Ray."""
        resolved = resolved if resolved is not None else self.resolved()
        decisive = {k: v for k, v in resolved.items() if k != "run"}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def build_operators(steps: list, source: str | None) -> list[Operator]:
    """Every step's operator; one ConfigError listing the problems of all steps, not only the first."""
    ops, problems = [], []
    for number, step in enumerate(steps, start=1):
        try:
            ops.append(build_operator(step, number, source))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return ops


def unknown_operator(name: str) -> str:
    """Why ``name`` is no operator: the closest registered name, then all of them."""
    return (f"unknown operator {name!r}{_did_you_mean(name, OPERATORS)}; known: {', '.join(sorted(OPERATORS))} "
            "(or your own as 'package.module:ClassName')")


def build_operator(step: dict, number: int, source: str | None) -> Operator:
    where = f"{source or 'config'}: pipeline step {number}"
    if not isinstance(step, dict) or "op" not in step:
        raise ConfigError(f"{where}: each step must be a mapping with an 'op' key, got {step!r}")
    params = dict(step)
    name = params.pop("op")
    try:
        cls = operator_class(name)
    except KeyError as exc:
        if ":" in name:
            raise ConfigError(f"{where}: cannot load operator {exc.args[0]}") from None
        raise ConfigError(f"{where}: {unknown_operator(name)}") from None
    try:
        return cls(**params)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{where} ({name}): {_explain(e, cls, name)}" for e in exc.errors())) from None


def check_fields_flow(ops: list[Operator], source: str | None, require_caption: bool = True) -> None:
    """Every step's required fields come from the input or an earlier step; the sink's too."""
    from vidcurate.operators.write.sink import DatasetSink
    from vidcurate.schemas.records import SOURCE

    available = set(SOURCE.names)
    teachers: dict[str, int] = {}
    for number, op in enumerate(ops, start=1):
        teacher = getattr(op, "teacher", None)
        if isinstance(teacher, str):
            if teacher in teachers:
                raise ConfigError(f"{source or 'config'}: pipeline steps {teachers[teacher]} and {number} both write "
                                  f"candidates as {teacher!r}; give each a distinct 'label'")
            teachers[teacher] = number
        missing = [f for f in op.requires if f not in available]
        if missing:
            raise ConfigError(f"{source or 'config'}: pipeline step {number} ({op.name}) needs "
                              f"{_needs(missing, ops)} from an earlier step")
        available.update(op.provides)
    needed = DatasetSink.requires + (("caption",) if require_caption else ())
    missing = [f for f in needed if f not in available]
    if missing:
        raise ConfigError(f"{source or 'config'}: the pipeline never produces {_needs(missing, ops)}, "
                          "which every dataset sample needs")


def _needs(fields: list[str], ops: list[Operator]) -> str:
    providers = {}
    for name in sorted(OPERATORS):
        for field in operator_class(name).provides:
            providers.setdefault(field, name)
    return ", ".join(f"'{f}' (add {providers[f]})" if f in providers else f"'{f}'" for f in fields)


def _explain(error: dict, model: type[BaseModel] | None = None, op: str | None = None) -> str:
    """One pydantic error as a sentence; an unknown field gets the closest field of ``model``."""
    loc = error["loc"]
    field = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        return f"unknown field {field!r}" + _field_hint(loc, model, op)
    if not loc:  # a check across fields (a model validator): its message says which
        message = error["msg"].removeprefix("Value error, ")
        return message.removeprefix(f"{op}: ") if op else message
    if error["type"] == "missing":
        return f"field {field!r} is required"
    return f"field {field!r}: {error['msg']} (got {error.get('input')!r})"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_hint(loc: tuple, model: type[BaseModel] | None, op: str | None) -> str:
    """The closest field of the (sub)model ``loc`` points into, as " (did you mean 'x'?)"; without
    a close one, where the fields are listed."""
    for part in loc[:-1]:  # e.g. ("output", "shard_max_sampels"): the fields of OutputConfig
        info = model.model_fields.get(part) if model is not None and isinstance(part, str) else None
        model = info.annotation if info is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    if model is None:
        return ""
    fields = [name for name, info in model.model_fields.items() if not info.exclude]
    hint = _did_you_mean(str(loc[-1]), fields)
    if hint:
        return hint
    return f" (`vidcurate ops {op}` lists its fields)" if op else f"; fields: {', '.join(fields)}"


def load_config(path: str | None = None, runner: str | None = None) -> BuildConfig:
    """Load a config file, or the embedded default when ``path`` is None or a bundled name."""
    if path is None or path in bundled_configs():
        name = path or DEFAULT_CONFIG
        text = resources.files("vidcurate.pipelines.build.configs").joinpath(f"{name}.yaml").read_text()
        source = f"<bundled config {name}>"
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not path.endswith((".yaml", ".yml")) and "/" not in path:
                # A name, not a path: the user meant a bundled config.
                raise ConfigError(f"config {path!r}: no such file, and no bundled config {path!r}; bundled: "
                                  f"{', '.join(bundled_configs())} (or a path to a YAML file)") from None
            raise ConfigError(f"config {path!r}: cannot be read: {exc.strerror or exc}") from None
        source = path
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = str(exc).replace('"<unicode string>"', source)
        raise ConfigError(f"config {source}: invalid YAML: {message}") from None
    if not isinstance(data, dict) or "pipeline" not in data:
        raise ConfigError(f"config {source}: expected a mapping with a 'pipeline' list of operator steps")
    if "source" in data:  # a field of BuildConfig, but set by the loader, never by a file
        raise ConfigError(f"config {source}: unknown field 'source'; a config has the sections pipeline, output "
                          "and run")
    if runner:
        data.setdefault("run", {})["runner"] = runner
    try:
        config = BuildConfig(**data, source=source)
    except ValidationError as exc:
        # The steps are checked too, so one error lists every problem of the file.
        problems, steps_checked = [], isinstance(data.get("pipeline"), list)
        if steps_checked:
            try:
                build_operators(data["pipeline"], source)
            except ConfigError as steps:
                problems += str(steps).splitlines()
        problems += [f"config {source}: {_explain(e, BuildConfig)}" for e in exc.errors()
                     if not (steps_checked and e["loc"][:1] == ("pipeline",))]  # said per step above
        raise ConfigError("\n".join(problems)) from None
    config.operators()  # validate every step now, not mid-build
    return config


def bundled_configs() -> list[str]:
    folder = resources.files("vidcurate.pipelines.build.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
