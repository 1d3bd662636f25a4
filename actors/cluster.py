"""Connecting a job's driver to Ray: the cluster it was submitted to, a configured address, or a new local one."""

from __future__ import annotations

import os
from pathlib import Path

import ray

from pipeline.config import RayConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def connect_ray(ray_config: RayConfig, local_cpus: int) -> None:
    """Join the cluster `ray job submit` gave us, or the configured one; else start a local one with `local_cpus`."""
    if ray.is_initialized():
        return
    address = ray_config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("VLLM_LOGGING_LEVEL", os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"))
    context = ray.init(
        address="local",
        num_cpus=local_cpus,
        include_dashboard=ray_config.dashboard,
        runtime_env={"env_vars": env},
        log_to_driver=True,
    )
    metrics_port = ray._private.worker.global_worker.node.metrics_export_port
    dashboard = f"dashboard http://{context.dashboard_url}, " if context.dashboard_url else ""
    print(
        f"[distillery] local Ray cluster, {local_cpus} CPUs: {dashboard}metrics http://127.0.0.1:{metrics_port}/metrics",
        flush=True,
    )
