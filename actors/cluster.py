"""Connecting a job's driver to Ray: the cluster it was submitted to, a configured address, or a new local one.

The terminal shows progress bars, warnings, errors and the job's own lines; Ray's INFO logs (cluster start, Ray Data's
execution plans, Ray Train's worker groups) stay in the session's log files (`/tmp/ray/session_latest/logs/`) unless
`DISTILLERY_RAY_LOGS=1` asks for them. Two of Ray Train's lines that repeat all run long are not logged at all
(`_quiet_worker_logs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import ray

from pipeline.config import RayConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
VERBOSE_LOGS_ENV = "DISTILLERY_RAY_LOGS"
# A state API address nothing answers on: see actors/train_run.py for why a local training run uses it.
UNREACHABLE_STATE_API = "http://127.0.0.1:9"


def ray_log_level() -> int:
    """The lowest level of Ray's own log records that reach the terminal."""
    return logging.INFO if os.environ.get(VERBOSE_LOGS_ENV) == "1" else logging.WARNING


def connect_ray(ray_config: RayConfig, local_cpus: int, *, quiet_train_logs: bool = False) -> None:
    """Join the cluster `ray job submit` gave us, or the configured one; else start a local one with `local_cpus`.
    `quiet_train_logs`: the job runs Ray Train, two of whose lines repeat all run long (`_quiet_worker_logs`)."""
    if ray.is_initialized():
        return
    level = ray_log_level()
    _ray_data_console(level)
    address = ray_config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=level)
        return
    # A local cluster's raylet, and so every worker, inherits this process's environment. Set here rather than in a
    # runtime_env, workers start directly: with one, each starts through a setup process and the workers Ray starts
    # ahead of time stay idle (a small distill run: 24 -> 20 CPU-seconds).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # Ray Data lists a Parquet folder with 32 footer-reading actors, a worker process each, on every read: made for
    # a cluster reading object storage, not for one node (the same run: 33 -> 20 CPU-seconds with one).
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
    hook = quiet_train_logs and level > logging.INFO
    context = ray.init(
        address="local",
        num_cpus=local_cpus,
        include_dashboard=ray_config.dashboard,
        runtime_env={"worker_process_setup_hook": _quiet_worker_logs()} if hook else None,
        log_to_driver=True,  # workers' warnings and errors reach the terminal
        logging_level=level,
    )
    metrics_port = ray._private.worker.global_worker.node.metrics_export_port
    dashboard = f"dashboard http://{context.dashboard_url}, " if context.dashboard_url else ""
    print(
        f"[distillery] local Ray cluster, {local_cpus} CPUs: {dashboard}metrics http://127.0.0.1:{metrics_port}/metrics",
        flush=True,
    )


def _quiet_worker_logs() -> Callable[[], None]:
    """What every worker process runs as it starts. Built here so that it travels by value: workers do not import
    this module."""

    def setup() -> None:
        import logging
        import os

        import ray

        # Ray Train logs each training report at INFO under a logger named by its file, outside `ray.train`'s level.
        context = os.path.join(os.path.dirname(ray.__file__), "train", "v2", "_internal", "execution", "context.py")
        logging.getLogger(context).setLevel(logging.WARNING)
        if os.environ.get("RAY_API_SERVER_ADDRESS") == UNREACHABLE_STATE_API:
            # Ray Train's placement-group cleaner then warns every second that it cannot check on the run.
            cleaner = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
            logging.getLogger(cleaner).setLevel(logging.ERROR)

    return setup


def _ray_data_console(level: int) -> None:
    """Ray Data logs to its file at every level and to the console from INFO; only the console's level changes.
    A user's own Ray Data logging config (`RAY_DATA_LOGGING_CONFIG`) is left as it is."""
    import ray.data  # noqa: F401 - importing it configures the `ray.data` logger

    if os.environ.get("RAY_DATA_LOGGING_CONFIG"):
        return
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(level)
