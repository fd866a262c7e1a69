"""Offline checks of the deployment files under infra/ (no cluster, no Docker, no network).

- infra/ray/cluster.yaml against the schema Ray itself validates `ray up` configs with
  (ray/autoscaler/ray-schema.json, shipped in the installed ray), then Ray's own
  prepare/validate steps.
- infra/k8s/*.yaml: every embedded PodTemplateSpec against the Kubernetes OpenAPI schemas
  bundled in kubernetes-validate (strict: unknown fields fail), and the KubeRay fields
  against a schema written here from KubeRay's ray.io/v1 Go types (no PyPI package ships
  the KubeRay CRDs).
- The RayJob's entrypoint against the real `vidcurate build` options and bundled configs,
  and the config's declared resources against the worker groups' sizes.
- Both Dockerfiles pin torch and install the package; the CUDA pins cover every runtime
  dependency of pyproject.toml.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import tomllib

import jsonschema
import kubernetes_validate
import pytest
import ray
import ray.autoscaler
import torch
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFRA = os.path.join(ROOT, "infra")
# Oldest and newest Kubernetes minor versions the manifests must be valid for.
K8S_VERSIONS = ("1.29", "1.37")
GPU = "nvidia.com/gpu"


def _yaml(*parts: str):
    with open(os.path.join(INFRA, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _text(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def raycluster() -> dict:
    return _yaml("k8s", "raycluster.yaml")


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return _yaml("k8s", "rayjob.yaml")


@pytest.fixture(scope="module")
def launcher() -> dict:
    return _yaml("ray", "cluster.yaml")


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json"), encoding="utf-8") as h:
        return json.load(h)


def _cpu_quantity(value) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _gpu_stage_packing(gpus: list[float], per_node: float) -> int:
    """Nodes needed for one actor of every GPU stage (first fit decreasing)."""
    free: list[float] = []
    for need in sorted(gpus, reverse=True):
        for i, left in enumerate(free):
            if need <= left + 1e-9:
                free[i] -= need
                break
        else:
            free.append(per_node * math.ceil(need / per_node) - need)
    return len(free)


def _bundled_config_resources(name: str):
    from vidcurate.pipelines.build.config import load_config

    return [(op.name, op.declared_resources()) for op in load_config(name).operators()]


# ---------------------------------------------------------------- (a) cluster launcher
def test_cluster_launcher_yaml_matches_rays_schema(launcher, ray_schema):
    jsonschema.Draft7Validator.check_schema(ray_schema)
    jsonschema.Draft7Validator(ray_schema).validate(launcher)
    # The schema is strict at the top level: a misspelt key is caught (so the check bites).
    broken = {**launcher, "idle_timeout_minute": 5}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema)


def test_cluster_launcher_yaml_passes_rays_own_validation(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(launcher))  # what `ray up` does before launching
    validate_config(config)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"].get("CPU") == 0, "no Ray tasks on the head"
    gpu_types = [n for n, t in types.items() if t["resources"].get("GPU", 0) > 0]
    cpu_types = [n for n, t in types.items() if n != config["head_node_type"] and not t["resources"].get("GPU")]
    assert gpu_types and cpu_types, "needs CPU decode workers and GPU teacher workers"
    workers = [t for n, t in types.items() if n != config["head_node_type"]]
    assert sum(t["max_workers"] for t in workers) <= config["max_workers"]
    assert all(t.get("min_workers", 0) <= t["max_workers"] for t in workers)
    assert config["idle_timeout_minutes"] > 0
    # Python, Ray and vidcurate come from the image: no install at node start-up.
    assert not any(config.get(key) for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"))


def test_cluster_launcher_fits_the_gpu_config(launcher):
    types = launcher["available_node_types"]
    gpu = next(t for t in types.values() if t["resources"].get("GPU"))
    cpu = max((t for t in types.values() if not t["resources"].get("GPU")), key=lambda t: t["resources"]["CPU"])
    resources = _bundled_config_resources("panda70m-gpu")
    gpu_steps = [r.gpus for _, r in resources if r.gpus > 0]
    for name, r in resources:
        assert r.gpus <= gpu["resources"]["GPU"], f"{name}: gpus {r.gpus} never fits a GPU node"
        assert r.cpus <= cpu["resources"]["CPU"], f"{name}: cpus {r.cpus} never fits a CPU node"
    assert _gpu_stage_packing(gpu_steps, gpu["resources"]["GPU"]) <= gpu["max_workers"]


# ---------------------------------------------------------------- (b) Kubernetes manifests
def _validate_pod_template(template: dict, where: str) -> None:
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(wrapped, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            raise AssertionError(f"{where} (Kubernetes {version}): {path}: {exc.message}") from None


def _pod_templates(cluster_spec: dict, prefix: str):
    yield f"{prefix}.headGroupSpec.template", cluster_spec["headGroupSpec"]["template"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield f"{prefix}.workerGroupSpecs[{group['groupName']}].template", group["template"]


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT = {"type": "integer", "minimum": 0}
_OBJ = {"type": "object"}
# KubeRay ray.io/v1 fields (ray-operator/apis/ray/v1/raycluster_types.go, rayjob_types.go),
# strict where this repo writes them; embedded Kubernetes types are checked separately.
_KUBERAY_DEFS = {
    "autoscalerOptions": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "resources": _OBJ, "image": {"type": "string"}, "imagePullPolicy": {"type": "string"},
            "env": {"type": "array"}, "envFrom": {"type": "array"}, "volumeMounts": {"type": "array"},
            "securityContext": _OBJ, "idleTimeoutSeconds": _INT, "version": {"enum": ["v1", "v2"]},
            "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
        },
    },
    "headGroupSpec": {
        "type": "object", "additionalProperties": False, "required": ["rayStartParams", "template"],
        "properties": {
            "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "headService": _OBJ,
            "enableIngress": {"type": "boolean"}, "rayStartParams": _STRING_MAP, "template": _OBJ,
            "resources": _STRING_MAP, "labels": _STRING_MAP,
        },
    },
    "workerGroupSpec": {
        "type": "object", "additionalProperties": False,
        "required": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
        "properties": {
            "groupName": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "replicas": _INT, "minReplicas": _INT, "maxReplicas": _INT, "numOfHosts": {"type": "integer", "minimum": 1},
            "idleTimeoutSeconds": _INT, "suspend": {"type": "boolean"}, "rayStartParams": _STRING_MAP,
            "template": _OBJ, "scaleStrategy": _OBJ, "resources": _STRING_MAP, "labels": _STRING_MAP,
        },
    },
    "rayClusterSpec": {
        "type": "object", "additionalProperties": False, "required": ["headGroupSpec"],
        "properties": {
            "headGroupSpec": {"$ref": "#/$defs/headGroupSpec"},
            "workerGroupSpecs": {"type": "array", "items": {"$ref": "#/$defs/workerGroupSpec"}},
            "rayVersion": {"type": "string"}, "enableInTreeAutoscaling": {"type": "boolean"},
            "autoscalerOptions": {"$ref": "#/$defs/autoscalerOptions"}, "headServiceAnnotations": _STRING_MAP,
            "suspend": {"type": "boolean"}, "managedBy": {"type": "string"}, "gcsFaultToleranceOptions": _OBJ,
            "upgradeStrategy": _OBJ, "authOptions": _OBJ,
        },
    },
    "rayJobSpec": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "entrypoint": {"type": "string"}, "runtimeEnvYAML": {"type": "string"},
            "rayClusterSpec": {"$ref": "#/$defs/rayClusterSpec"}, "clusterSelector": _STRING_MAP,
            "submitterPodTemplate": _OBJ, "submitterConfig": _OBJ, "metadata": _STRING_MAP,
            "jobId": {"type": "string"}, "shutdownAfterJobFinishes": {"type": "boolean"},
            "ttlSecondsAfterFinished": _INT, "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
            "backoffLimit": _INT, "suspend": {"type": "boolean"}, "managedBy": {"type": "string"},
            "deletionStrategy": _OBJ, "schedule": {"type": "string"},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "entrypointNumCpus": {"type": "number"}, "entrypointNumGpus": {"type": "number"},
            "entrypointResources": {"type": "string"},
        },
    },
}


def _kuberay_validate(obj: dict, kind: str) -> None:
    spec_def = {"RayCluster": "rayClusterSpec", "RayJob": "rayJobSpec"}[kind]
    schema = {
        "$defs": _KUBERAY_DEFS, "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"]}, "spec": {"$ref": f"#/$defs/{spec_def}"},
        },
    }
    jsonschema.Draft202012Validator(schema).validate(obj)


def _check_cluster_spec(spec: dict, where: str) -> None:
    """What this repo's sizing relies on, beyond field names."""
    assert spec["rayVersion"] == ray.__version__, f"{where}: rayVersion must match the installed ray"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"].get("num-cpus") == "0", f"{where}: no Ray tasks on the head"
    images = set()
    for name, template in _pod_templates(spec, where):
        for container in template["spec"]["containers"]:
            images.add(container["image"])
            res = container.get("resources", {})
            assert res.get("requests") and res.get("limits"), f"{name}/{container['name']}: requests and limits"
            for key in ("cpu", "memory"):
                assert key in res["requests"] and key in res["limits"], f"{name}: {key} request and limit"
    assert len(images) == 1, f"{where}: every pod runs the one image, got {images}"
    image = images.pop()
    assert ":" in image.split("/")[-1] and not image.endswith(":latest"), f"{where}: pin the image tag ({image})"

    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert len(groups) == len(spec["workerGroupSpecs"]), "group names must be unique"
    assert set(groups) == {"cpu-decode", "gpu-teachers"}
    for name, group in groups.items():
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"], name
        container = group["template"]["spec"]["containers"][0]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        num_cpus = group["rayStartParams"].get("num-cpus")
        if num_cpus is not None:
            assert float(num_cpus) <= _cpu_quantity(limits["cpu"]), f"{name}: num-cpus above the pod's CPU limit"
    cpu, gpu = groups["cpu-decode"], groups["gpu-teachers"]
    cpu_res = cpu["template"]["spec"]["containers"][0]["resources"]
    assert GPU not in cpu_res["limits"] and "num-gpus" not in cpu["rayStartParams"]
    gpu_res = gpu["template"]["spec"]["containers"][0]["resources"]
    assert int(gpu_res["limits"][GPU]) >= 1 and gpu_res["requests"].get(GPU, gpu_res["limits"][GPU]) == gpu_res["limits"][GPU]
    assert float(gpu["rayStartParams"]["num-gpus"]) == int(gpu_res["limits"][GPU])
    tolerations = gpu["template"]["spec"].get("tolerations", [])
    assert any(t.get("key") == GPU for t in tolerations), "GPU nodes are usually tainted nvidia.com/gpu"


def test_raycluster_manifest(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["kind"] == "RayCluster"
    _kuberay_validate(raycluster, "RayCluster")
    _check_cluster_spec(raycluster["spec"], "raycluster.yaml")
    for where, template in _pod_templates(raycluster["spec"], "spec"):
        _validate_pod_template(template, f"raycluster.yaml {where}")
    # autoscalerOptions.resources is a core/v1 ResourceRequirements: check it as one.
    resources = raycluster["spec"]["autoscalerOptions"]["resources"]
    _validate_pod_template({"spec": {"containers": [{"name": "autoscaler", "image": "x", "resources": resources}]}},
                           "raycluster.yaml spec.autoscalerOptions.resources")


def test_rayjob_manifest(rayjob, raycluster):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    _kuberay_validate(rayjob, "RayJob")
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["rayClusterSpec"] == raycluster["spec"], "rayjob.yaml's rayClusterSpec drifted from raycluster.yaml"
    yaml.safe_load(spec["runtimeEnvYAML"])  # KubeRay converts it to JSON: it must parse
    submitter = spec["submitterPodTemplate"]
    _validate_pod_template(submitter, "rayjob.yaml spec.submitterPodTemplate")
    assert submitter["spec"]["restartPolicy"] == "Never"
    head_image = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert submitter["spec"]["containers"][0]["image"] == head_image


def test_pod_template_validation_is_strict(raycluster):
    template = copy.deepcopy(raycluster["spec"]["workerGroupSpecs"][0]["template"])
    container = template["spec"]["containers"][0]
    container["resource"] = container.pop("resources")  # a typo the API server would reject
    with pytest.raises(AssertionError, match="resource"):
        _validate_pod_template(template, "typo")
    bad = copy.deepcopy(raycluster)
    bad["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = 16  # KubeRay wants strings
    with pytest.raises(jsonschema.ValidationError):
        _kuberay_validate(bad, "RayCluster")


def test_kubernetes_manifests_fit_the_gpu_config(raycluster):
    groups = {g["groupName"]: g for g in raycluster["spec"]["workerGroupSpecs"]}
    gpu_per_node = float(groups["gpu-teachers"]["rayStartParams"]["num-gpus"])
    cpu_per_node = float(groups["cpu-decode"]["rayStartParams"]["num-cpus"])
    resources = _bundled_config_resources("panda70m-gpu")
    for name, r in resources:
        assert r.gpus <= gpu_per_node, f"{name}: gpus {r.gpus} never fits a gpu-teachers pod"
        assert r.cpus <= cpu_per_node, f"{name}: cpus {r.cpus} never fits a cpu-decode pod"
    nodes = _gpu_stage_packing([r.gpus for _, r in resources if r.gpus > 0], gpu_per_node)
    assert nodes <= groups["gpu-teachers"]["maxReplicas"], "one actor per GPU stage must fit"


# ---------------------------------------------------------------- (c) the RayJob entrypoint
def _build_command():
    from vidcurate.pipelines.cli import cli

    return cli.commands["build"]


def _entrypoint_options(rayjob) -> tuple[list[str], dict[str, str]]:
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:2] == ["vidcurate", "build"], argv
    args, values, i = argv[2:], {}, 0
    command = _build_command()
    by_opt = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    while i < len(args):
        flag = args[i]
        assert flag.startswith("-"), f"unexpected argument {flag!r} in the entrypoint"
        name, _, inline = flag.partition("=")
        assert name in by_opt, f"`vidcurate build` has no option {name} (options: {sorted(by_opt)})"
        param = by_opt[name]
        if getattr(param, "is_flag", False):
            i += 1
            continue
        if inline:
            values[param.name] = inline
            i += 1
        else:
            assert i + 1 < len(args), f"{name} needs a value"
            values[param.name] = args[i + 1]
            i += 2
    return args, values


def test_rayjob_entrypoint_uses_real_build_options(rayjob):
    from click.testing import CliRunner

    _, values = _entrypoint_options(rayjob)
    assert {"input_location", "output", "config_path", "runner"} <= set(values), values
    assert values["input_location"].startswith("s3://") and values["output"].startswith("s3://")
    assert values["runner"] == "ray"
    help_text = CliRunner().invoke(_build_command(), ["--help"]).output
    for flag in ("--input", "--output", "--config", "--runner"):
        assert flag in help_text


def test_rayjob_entrypoint_names_a_bundled_config(rayjob):
    from vidcurate.pipelines.build.config import bundled_configs, load_config

    _, values = _entrypoint_options(rayjob)
    assert values["config_path"] in bundled_configs()
    load_config(values["config_path"])  # and it validates


def test_rayjob_entrypoint_parses_with_the_runner_choice(rayjob):
    command = _build_command()
    runner = next(p for p in command.params if p.name == "runner")
    if "ray" not in runner.type.choices:
        pytest.skip("`vidcurate build --runner ray` is not registered yet")
    args, _ = _entrypoint_options(rayjob)
    context = command.make_context("build", list(args), resilient_parsing=False)
    assert context.params["runner"] == "ray"


# ---------------------------------------------------------------- (d) Dockerfiles and pins
def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in _text(path).splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _torch_pin(dockerfile: str) -> str:
    text = _text("infra", dockerfile)
    direct = re.search(r"torch==([0-9][^\s\"']*)", text)
    if direct:
        return direct.group(1)
    constraints = re.findall(r"-c\s+(infra/constraints-[\w-]+\.txt)", text)
    assert constraints, f"{dockerfile}: installs without a constraints file or a torch== pin"
    for path in constraints:
        assert f"COPY {path} {path}" in text, f"{dockerfile}: {path} is used but not copied into the image"
        if "torch" in _pins(path):
            return _pins(path)["torch"]
    raise AssertionError(f"{dockerfile}: torch is not pinned")


def _package_roots() -> list[str]:
    """setup.py's ROOTS: the top-level folders installed as vidcurate.<folder>."""
    import ast

    tree = ast.parse(_text("setup.py"))
    [roots] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["ROOTS"]]
    return sorted(ast.literal_eval(roots))


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_pins_torch_and_installs_the_package(dockerfile):
    text = _text("infra", dockerfile)
    installed = Version(torch.__version__).base_version
    assert _torch_pin(dockerfile) == installed, f"{dockerfile}: pins torch {_torch_pin(dockerfile)}, tests run {installed}"
    for line in re.findall(r"^FROM\s+(\S+)", text, flags=re.M):
        assert ":" in line.split("/")[-1] and not line.endswith(":latest"), f"{dockerfile}: unpinned base {line}"
    for folder in _package_roots():
        assert re.search(rf"^COPY {folder} {folder}$", text, flags=re.M), f"{dockerfile}: does not copy {folder}/"
    assert re.search(r"^COPY pyproject.toml setup.py ", text, flags=re.M), f"{dockerfile}: packaging files"
    assert re.search(r"^RUN .*(pip|uv pip) install[^\n]*(\\\n[^\n]*)*\"\.\[ocr\]\"", text, flags=re.M), \
        f"{dockerfile}: does not install the package (with its ocr extra) from the copied source"
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile}: runs as root"


def test_cuda_pins_cover_every_runtime_dependency():
    pins = _pins("infra/constraints-cuda.txt")
    assert pins["ray"] == ray.__version__
    project = tomllib.loads(_text("pyproject.toml"))["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["ocr"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"infra/constraints-cuda.txt does not pin {req.name} (pyproject.toml dependency)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} violates {req.specifier}"
    for extra in ("s3fs", "boto3", "nvidia-cublas-cu12"):
        assert extra in pins


# ---------------------------------------------------------------- (e) Beam on Flink, Spark, Dataflow
def _beam_commands() -> list[list[str]]:
    """Every `vidcurate build ...` command in infra/beam/README.md, as argument lists."""
    text = _text("infra/beam/README.md")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command)
            if words[:2] == ["vidcurate", "build"]:
                commands.append(words[2:])
    return commands


def test_beam_commands_parse_with_vidcurate_and_every_flag_after_the_dashes_is_a_beam_option():
    from apache_beam.options.pipeline_options import PipelineOptions

    from vidcurate.pipelines.build.config import bundled_configs

    commands = _beam_commands()
    runners = set()
    for args in commands:
        context = _build_command().make_context("build", list(args), resilient_parsing=False)
        assert context.params["runner"] == "beam" and context.params["config_path"] in [None, *bundled_configs()]
        flags = list(context.params["beam_options"])
        known = PipelineOptions(flags).get_all_options(retain_unknown_options=False)
        for flag in flags:
            name = flag.lstrip("-").split("=", 1)[0]
            assert name in known, f"infra/beam/README.md: {flag} is not a Beam pipeline option"
        runners.add(PipelineOptions(flags).get_all_options()["runner"])
    assert {"FlinkRunner", "SparkRunner", "PortableRunner", "DataflowRunner"} <= runners, runners


def test_the_beam_sdk_image_matches_the_pinned_beam_and_boots_the_harness():
    text = _text("infra/beam/Dockerfile.sdk")
    [version] = re.findall(r"^FROM apache/beam_python3\.11_sdk:(\S+) AS beam", text, flags=re.M)
    assert version == _pins("infra/constraints-cuda.txt")["apache-beam"]
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in text
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]', text, flags=re.M)
    for job_server in re.findall(r"apache/beam_\w+_job_server:(\S+)", _text("infra/beam/README.md")):
        assert job_server == version
