"""Resource arithmetic for a distillation run, in one place, readable before anything starts."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pipeline.config import DistillConfig, EngineConfig, RayConfig

# Reading and parsing are light; they must never starve the engines of a small cluster.
INGEST_CPUS_PER_TASK = 0.25
# Ray Data's own planning tasks (file listing) ask for a whole CPU each and cannot be resized from outside.
DATA_INTERNAL_CPUS = 2


@dataclass(frozen=True)
class ResourcePlan:
    teacher_cpus: float  # all replicas of all teachers
    teacher_gpus: float
    verifier_cpus: float
    local_cluster_cpus: int  # logical CPUs to give a local cluster

    def describe(self) -> str:
        return f"teachers: {self.teacher_cpus:g} CPU, {self.teacher_gpus:g} GPU; verifiers: {self.verifier_cpus:g} CPU"


def stage_resources(engine: EngineConfig) -> tuple[float, float]:
    """(CPUs, GPUs) of one replica of a teacher stage; an HTTP endpoint needs no local GPU."""
    return engine.num_cpus, getattr(engine, "num_gpus", 0.0)


def plan_resources(config: DistillConfig, host_cpus: int | None = None) -> ResourcePlan:
    per_replica = [(stage_resources(t.engine), t.engine.replicas) for t in config.teachers]
    teacher_cpus = sum(cpus * replicas for (cpus, _), replicas in per_replica)
    teacher_gpus = sum(gpus * replicas for (_, gpus), replicas in per_replica)
    verifier_cpus = config.verifiers.num_cpus * config.verifiers.replicas
    local = local_cluster_cpus(teacher_cpus + verifier_cpus, config.ray, host_cpus)
    return ResourcePlan(teacher_cpus, teacher_gpus, verifier_cpus, local)


def local_cluster_cpus(actor_cpus: float, ray_config: RayConfig, host_cpus: int | None = None) -> int:
    """Logical CPUs for a local cluster: enough for every actor plus Ray Data's own tasks. They may exceed the
    physical ones: engines mostly wait on their own worker processes."""
    needed = actor_cpus + 2 * INGEST_CPUS_PER_TASK + DATA_INTERNAL_CPUS
    return ray_config.num_cpus or max(host_cpus or os.cpu_count() or 1, math.ceil(needed))
