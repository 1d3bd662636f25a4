"""The verifier pool on an autoscaling cluster: it grows onto the nodes the autoscaler adds for it, and a run that
loses one of those nodes midway still ends with every query accepted or rejected exactly once.

The cluster is Ray's own autoscaler with its `fake_multinode` provider, which starts each node it launches as real
raylet processes on this host: a head with CPUs for the job's driver side, and 1-CPU worker nodes from zero.
The teacher is the SIMULATED engine of `bench/simulated_engine.py`, not vLLM: the point is the verifier pool's
scaling, which needs answers to arrive faster than one checker verifies them, and a real engine on a 2-core host is
far too slow for that. Everything else is the product: `run_distill`, Ray Data, the teacher stage, the Math-Verify
checkers, the Parquet output.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray
from ray.util.state import list_actors

from actors.cluster import REPO_ROOT
from actors.distill_run import run_distill
from pipeline.config import ConfigError, DistillConfig, VerifierConfig, parse_config
from pipeline.resources import plan_resources
from pipeline.storage import Store

HEAD_CPUS = 2
WORKER_CPUS = 1  # one checker each: every checker past the head's asks for a node of its own
MAX_WORKERS = 3  # one more than the pool can use, so a replacement for a lost node can start at once
# Enough that the run outlasts the autoscaler's second node: with 4,000 it ended first on an idle host (about 30 s).
QUERIES = 10_000
# The fake provider builds worker nodes' GCS address from this port.
GCS_PORT = 6379


def fake_cluster_config() -> dict:
    """An autoscaler config for the `fake_multinode` provider (Ray's wheel ships no example of it)."""
    return {
        "cluster_name": "fake_multinode",
        "max_workers": MAX_WORKERS,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": HEAD_CPUS}, "node_config": {}, "max_workers": 0},
            "cpu": {
                "resources": {"CPU": WORKER_CPUS, "object_store_memory": 200 * 2**20},
                "node_config": {}, "min_workers": 0, "max_workers": MAX_WORKERS,
            },
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 1.0,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture
def autoscaling_cluster(tmp_path, monkeypatch):
    """A head with an autoscaler that launches worker nodes on this host; everything it started is stopped after."""
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_FAKE_CLUSTER", "1")  # what the fake provider insists on
    monkeypatch.setenv("AUTOSCALER_UPDATE_INTERVAL_S", "1")
    # Every node's workers import the repository (the simulated engine, the stages).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    config_path = tmp_path / "autoscaler.json"
    config_path.write_text(json.dumps(fake_cluster_config()))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": HEAD_CPUS, "gcs_server_port": GCS_PORT, "autoscaling_config": str(config_path),
        "object_store_memory": 300 * 2**20,
        # The provider knows the head by this id: under any other, the autoscaler takes the head for idle and fits
        # the demand there instead of launching a node (what `ray start --head` does when RAY_FAKE_CLUSTER is set).
        "env_vars": {"RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID},
        # A lost node is noticed in about 2 s, not Ray's default 15 s.
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
    })
    session = cluster.head_node.get_session_dir_path()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        # Worker nodes are the autoscaler's children, started with this session's folder in their command lines.
        for pid in _pids_with_arg(session):
            _kill(pid)


def _pids_with_arg(text: str, exact: bool = False) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if any(a == text if exact else text in a for a in args) and proc.name.isdigit():
            pids.append(int(proc.name))
    return pids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def write_sum_queries(path: Path, count: int) -> list[str]:
    rng = random.Random(0)
    ids = []
    with open(path, "w") as f:
        for i in range(count):
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            ids.append(f"sum-{i}")
            f.write(json.dumps({"id": ids[-1], "category": "math", "prompt": f"What is {a} + {b}?",
                                "reference": {"answer": str(a + b)}}) + "\n")
    return ids


def checker_nodes() -> set[str]:
    actors = list_actors(filters=[("class_name", "=", "VerifierActor"), ("state", "=", "ALIVE")])
    return {a["node_id"] for a in actors}


def worker_nodes(head_id: str) -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head_id}


@pytest.mark.slow
def test_verifier_pool_grows_onto_new_nodes_and_survives_losing_one(autoscaling_cluster, tmp_path):
    ids = write_sum_queries(tmp_path / "sums.jsonl", QUERIES)
    config = parse_config(DistillConfig, {
        "input": {"paths": [str(tmp_path / "sums.jsonl")]},
        "output": str(tmp_path / "out"),
        "teachers": [{
            "name": "simulated", "model": "simulated",
            # Far faster than the checkers: answers queue for verification, which is what makes the pool grow.
            "engine": {"num_cpus": 0.5, "batch_size": 16, "batches_in_flight": 16,
                       "engine_kwargs": {"step_s": 0.0005, "max_num_seqs": 256, "pass_rate": 0.5}},
            "sampling": {"default": {"n": 1}},
            "max_attempts": 2,
        }],
        "verifiers": {"replicas": 1, "max_replicas": 3, "num_cpus": WORKER_CPUS},
        "ray": {"address": autoscaling_cluster.address},
        "shard_rows": 512,
        "flush_seconds": 2.0,
    })
    ray.init(address=autoscaling_cluster.address)  # run_distill joins this connection
    head_id = ray.get_runtime_context().get_node_id()
    assert not worker_nodes(head_id), "the cluster starts with the head alone"

    started = time.monotonic()
    seen_workers: set[str] = set()
    seen_checker_nodes: set[str] = set()
    killed = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        run = pool.submit(run_distill, config, False, "bench.simulated_engine:SimulatedEngine")
        while not run.done():
            seen_workers |= worker_nodes(head_id)
            hosts = checker_nodes()
            seen_checker_nodes |= hosts
            if killed is None and len(hosts) >= 2 and hosts - {head_id}:
                # A worker node with a checker on it goes away: its raylet dies, and with it its workers.
                killed = sorted(hosts - {head_id})[0]
                for pid in _pids_with_arg(f"--node_id={killed}", exact=True):
                    _kill(pid)
                killed_at = time.monotonic() - started
            time.sleep(0.5)
        summary = run.result()
    print(f"run {summary['wall_s']} s; worker nodes seen {len(seen_workers)}, checker nodes {len(seen_checker_nodes)}, "
          f"node killed at {killed_at if killed else None} s")

    assert seen_workers, "the autoscaler added no node while the run went"
    assert len(seen_checker_nodes) >= 2, f"checkers ran on {len(seen_checker_nodes)} node(s) only"
    assert killed is not None, "the run ended before the pool had grown onto a second node"
    assert summary["stopped"] == []

    store = Store(config.output)
    accepted = store.read_table("teachers/simulated/accepted", columns=["id"]).column("id").to_pylist()
    rejected = store.read_table("teachers/simulated/rejects", columns=["id"]).column("id").to_pylist()
    counts = Counter(accepted + rejected)
    assert sorted(counts) == sorted(ids), "a query is missing from both accepted/ and rejects/"
    assert [i for i, n in counts.items() if n > 1] == [], "a query was committed twice"


def test_max_replicas_below_replicas_is_refused():
    with pytest.raises(ConfigError, match=r"verifiers: .*max_replicas \(1\) is below replicas \(2\)"):
        parse_config(DistillConfig, {
            "input": {"paths": ["x.jsonl"]}, "output": "out", "teachers": [{"name": "t", "model": "m"}],
            "verifiers": {"replicas": 2, "max_replicas": 1},
        })


def test_a_local_cluster_has_cpus_for_the_largest_pool():
    """A local cluster is sized for the pool at its largest, so it can grow there too."""
    verifiers = VerifierConfig(replicas=1, max_replicas=8, num_cpus=1)
    config = DistillConfig(input={"paths": ["x.jsonl"]}, output="out", teachers=[{"name": "t", "model": "m"}],
                           verifiers=verifiers)
    plan = plan_resources(config, host_cpus=2)
    assert plan.verifier_cpus == 8
    assert plan.local_cluster_cpus >= 8 + 1  # and the teacher's CPU
