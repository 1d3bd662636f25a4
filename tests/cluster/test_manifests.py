"""The cluster templates: every manifest parses and has what its kind needs, every RayJob runs a command the job's own
argument parser accepts with a config that loads, the autoscaler files have the three node types, and every
template runs the image cluster/Dockerfile builds, which installs what `make setup` installs on a GPU host.

Pure Python: nothing here starts Ray or talks to Kubernetes."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from actors.serve_app import IMPORT_PATH, deploy_config
from cluster import render
from pipeline import config as config_module
from pipeline.config import ServeConfig, parse_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
AUTOSCALER_FILES = ["aws.yaml", "gcp.yaml"]
RAYJOB_FILES = sorted(KUBERAY.glob("rayjob-*.yaml"))
PIPELINE_JOBS = ["preprocess", "distill", "filter", "train", "evaluate", "experiment"]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def dockerfile_tag() -> str:
    """The tag the Dockerfile's build line gives the image: what every template must run."""
    match = re.search(r"docker build -f cluster/Dockerfile -t (\S+) \.", (CLUSTER / "Dockerfile").read_text())
    assert match, "cluster/Dockerfile documents its build command with -t TAG"
    return match.group(1)


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def check_cluster_spec(spec: dict, groups: set[str]) -> None:
    """What every KubeRay cluster here needs: autoscaler v2, a head that does no work, worker groups that scale from
    zero, the distillery image, GPUs on the GPU group and the sandbox's security context on the CPU group."""
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["rayVersion"] == dockerfile_ray_version()
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "template" in head
    pods = [head["template"]]
    by_name = {}
    for group in spec["workerGroupSpecs"]:
        for field in ("groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"):
            assert field in group, f"worker group lacks {field}"
        assert 0 == group["minReplicas"] <= group["maxReplicas"], "a worker group scales from zero"
        by_name[group["groupName"]] = group
        pods.append(group["template"])
    assert set(by_name) == groups
    for pod in pods:
        assert [c["image"] for c in containers(pod)] == [dockerfile_tag()]
    gpu = containers(by_name["gpu"]["template"])[0]["resources"]
    assert int(gpu["limits"]["nvidia.com/gpu"]) > 0
    if "cpu" in by_name:
        cpu = containers(by_name["cpu"]["template"])[0]
        assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
        # pipeline/verifiers/sandbox.py: unshare, mount and pivot_root, refused by the default profiles.
        assert cpu["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
        assert cpu["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
        assert not cpu["securityContext"].get("privileged", False)


def dockerfile_ray_version() -> str:
    match = re.search(r"^ARG RAY_VERSION=(\S+)$", (CLUSTER / "Dockerfile").read_text(), re.MULTILINE)
    assert match
    return match.group(1)


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_manifest_parses(path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents


@pytest.mark.parametrize("path", sorted(render.rendered()), ids=lambda p: p.name)
def test_generated_manifests_are_up_to_date(path):
    assert path.read_text() == render.rendered()[path], "stale: run `python cluster/render.py`"


def test_raycluster_has_a_head_a_gpu_group_and_a_cpu_group():
    cluster = load(KUBERAY / "raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    check_cluster_spec(cluster["spec"], {"gpu", "cpu"})


def test_there_is_a_rayjob_for_each_pipeline_step():
    assert [p.name for p in RAYJOB_FILES] == sorted(f"rayjob-{job}.yaml" for job in PIPELINE_JOBS)


@pytest.mark.parametrize("path", RAYJOB_FILES, ids=lambda p: p.stem)
def test_rayjob_retries_on_a_fresh_cluster_of_the_raycluster_spec_and_cleans_up(path):
    job = load(path)
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1, "a retry continues the run (resume), so retrying is worth it"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert "clusterSelector" not in spec
    assert spec["rayClusterSpec"] == load(KUBERAY / "raycluster.yaml")["spec"]
    check_cluster_spec(spec["rayClusterSpec"], {"gpu", "cpu"})
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == render.IMAGE_WORKDIR


class _Parsed(Exception):
    """Raised by the stand-in for load_config: the job's parser accepted the arguments and named a config."""

    def __init__(self, config_class: type, path: str | None):
        super().__init__(path)
        self.config_class, self.path = config_class, path


@pytest.mark.parametrize("path", RAYJOB_FILES, ids=lambda p: p.stem)
def test_rayjob_entrypoint_is_accepted_by_the_jobs_own_parser_and_its_config_loads(path, monkeypatch):
    """The entrypoint is what a user types after `ray job submit --`: the job's real argparse parser reads it (an
    unknown or missing argument exits 2), then the config it names must load as that job's config class."""
    argv = shlex.split(load(path)["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"]
    module = importlib.import_module(argv[2])
    assert argv[2] == f"jobs.{path.stem.removeprefix('rayjob-')}"

    def parsed(config_class, config_path):
        raise _Parsed(config_class, config_path)

    # jobs.experiment reads its config through pipeline.experiment; every other job calls load_config itself.
    monkeypatch.setattr(importlib.import_module("pipeline.experiment") if module.__name__ == "jobs.experiment"
                        else module, "load_config", parsed)
    with pytest.raises(_Parsed) as stop:
        module.main(argv[3:])
    config_path = stop.value.path
    assert config_path is not None and Path(config_path).parts[0] == "configs"
    assert (REPO / config_path).is_file()
    monkeypatch.chdir(REPO)  # the job's working directory is the repository (runtime_env working_dir)
    config_module.load_config(stop.value.config_class, config_path)


def test_rayservice_serves_the_jobs_serve_application_with_a_valid_config():
    service = load(KUBERAY / "rayservice.yaml")
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve["http_options"]["host"] == "0.0.0.0", "reachable through the Kubernetes Service"
    [app] = serve["applications"]
    assert app["import_path"] == IMPORT_PATH
    config = parse_config(ServeConfig, app["args"], source="serveConfigV2")
    assert config.engine.num_gpus > 0
    # The same shape `python -m jobs.serve --print-deploy-config` writes.
    assert set(app) == set(deploy_config(config)["applications"][0])
    cluster = service["spec"]["rayClusterConfig"]
    check_cluster_spec(cluster, {"gpu"})
    reference = load(KUBERAY / "raycluster.yaml")["spec"]
    assert cluster["headGroupSpec"] == reference["headGroupSpec"]
    assert cluster["workerGroupSpecs"] == [g for g in reference["workerGroupSpecs"] if g["groupName"] == "gpu"]


@pytest.mark.parametrize("name", AUTOSCALER_FILES)
def test_autoscaler_config_has_a_workless_head_and_spot_gpu_and_cpu_workers(name):
    config = load(CLUSTER / name)
    types = config["available_node_types"]
    assert set(types) == {"head", "gpu", "cpu"}
    assert config["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}
    assert config["docker"]["image"] == dockerfile_tag()
    assert {"--security-opt seccomp=unconfined", "--security-opt apparmor=unconfined"} <= set(
        config["docker"]["run_options"]
    )
    assert "--privileged" not in config["docker"]["run_options"]
    assert sum(types[t]["max_workers"] for t in ("gpu", "cpu")) <= config["max_workers"]
    for worker in ("gpu", "cpu"):
        assert types[worker]["min_workers"] == 0
        assert is_spot(config["provider"]["type"], types[worker]["node_config"]), f"{worker} workers are spot"
    assert not is_spot(config["provider"]["type"], types["head"]["node_config"]), "the head is on-demand"


def is_spot(provider: str, node_config: dict) -> bool:
    if provider == "aws":
        return node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    return node_config.get("scheduling", {}).get("provisioningModel") == "SPOT"


def test_dockerfile_installs_what_make_setup_installs_on_a_gpu_host():
    """The image runs the Makefile's own set-up with GPU=1 (no GPU is visible while an image builds), so it gets
    the extras of the Makefile's CUDA branch and nothing installed by hand beside them."""
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    gpu_branch = makefile.split("ifeq ($(GPU),1)")[1].split("else")[0]
    assert re.search(r"-e '\.\[gpu[,\]]", gpu_branch), "the Makefile's CUDA branch installs the gpu extra"
    runs = run_instructions(dockerfile)
    assert any(re.search(r"\bmake (setup|model) GPU=1\b", run) for run in runs)
    assert not any(re.search(r"\bpip3? install\b", run) for run in runs), "everything comes from make"
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        folder = pattern.rstrip("*")
        assert f"COPY --chown=ray:users {folder}/ {folder}/" in dockerfile, f"the image lacks the {folder} package"


def run_instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's RUN commands, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def test_image_tag_is_the_project_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert dockerfile_tag().endswith(f"/distillery:{version}")
