"""Resource arithmetic for distill and verify runs, in one place, readable before anything starts."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pipeline.config import (
    DistillConfig, EmbeddingConfig, EngineConfig, RayConfig, ServedModel, VerifierConfig, VerifyJobConfig,
)

# Reading and parsing are light; they must never starve the engines of a small cluster.
INGEST_CPUS_PER_TASK = 0.25
# Ray Data's own planning tasks (file listing) ask for a whole CPU each and cannot be resized from outside.
DATA_INTERNAL_CPUS = 2


@dataclass(frozen=True)
class ResourcePlan:
    teacher_cpus: float  # all replicas of all teachers
    teacher_gpus: float
    verifier_cpus: float
    judge_cpus: float
    judge_gpus: float
    local_cluster_cpus: int  # logical CPUs to give a local cluster

    def describe(self) -> str:
        text = f"teachers: {self.teacher_cpus:g} CPU, {self.teacher_gpus:g} GPU; verifiers: {self.verifier_cpus:g} CPU"
        if self.judge_cpus or self.judge_gpus:
            text += f"; judge: {self.judge_cpus:g} CPU, {self.judge_gpus:g} GPU"
        return text


def pool_range(engine: EngineConfig | EmbeddingConfig | VerifierConfig) -> tuple[int, int]:
    """(fewest, most) replicas of an actor pool: a fixed pool has `replicas` of each."""
    return engine.replicas, engine.max_replicas or engine.replicas


def stage_resources(engine: EngineConfig) -> tuple[float, float]:
    """(CPUs, GPUs) of one replica of a teacher stage; an HTTP endpoint needs no local GPU."""
    return engine.num_cpus, getattr(engine, "num_gpus", 0.0)


def plan_resources(config: DistillConfig | VerifyJobConfig, host_cpus: int | None = None) -> ResourcePlan:
    teacher_cpus, teacher_gpus = _pool_resources(getattr(config, "teachers", []))
    judge_cpus, judge_gpus = _pool_resources([config.judge] if config.judge else [])
    verifier_cpus = config.verifiers.num_cpus * pool_range(config.verifiers)[1]  # at its largest, as engines
    local = local_cluster_cpus(teacher_cpus + verifier_cpus + judge_cpus, config.ray, host_cpus)
    return ResourcePlan(teacher_cpus, teacher_gpus, verifier_cpus, judge_cpus, judge_gpus, local)


def _pool_resources(models: list[ServedModel]) -> tuple[float, float]:
    """(CPUs, GPUs) of all replicas of these engines, at their largest."""
    per_replica = [(stage_resources(m.engine), pool_range(m.engine)[1]) for m in models]
    return (
        sum(cpus * replicas for (cpus, _), replicas in per_replica),
        sum(gpus * replicas for (_, gpus), replicas in per_replica),
    )


def local_cluster_cpus(actor_cpus: float, ray_config: RayConfig, host_cpus: int | None = None) -> int:
    """Logical CPUs for a local cluster: enough for every actor plus Ray Data's own tasks. They may exceed the
    physical ones: engines mostly wait on their own worker processes."""
    needed = actor_cpus + 2 * INGEST_CPUS_PER_TASK + DATA_INTERNAL_CPUS
    return ray_config.num_cpus or max(host_cpus or os.cpu_count() or 1, math.ceil(needed))
