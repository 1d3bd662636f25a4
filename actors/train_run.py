"""A student training run on Ray Train: tokenize the sources once, then run `actors.train_loop.train_worker` on
every rank of a TorchTrainer.

Output layout under `config.output` (local or object storage):
    config.json            resolved config and its hash; another config's run in the same folder is refused
    tokenized/             the sources with the student's chat template applied (actors/train_data.py)
    checkpoints/           Ray Train's run folder: step_XXXXXXXX/ checkpoints and its own state
    model/                 the final model, a Hugging Face folder that transformers and vLLM load
    plots/training.png     loss and learning rate, tokens/s, MFU and packing efficiency of this run's steps
    summary.json

Running the same command again resumes from the latest checkpoint: Ray Train finds the run by its storage path and
name. Worker failures within a run are recovered the same way, up to `max_failures`.

Sources that are missing, unreadable or too small for one optimizer step, and an output that cannot be written, are
refused before Ray starts, with one message.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from actors.cluster import UNREACHABLE_STATE_API, connect_ray, ray_log_level
from actors.train_data import input_files, tokenize_sources
from actors.train_loop import train_worker
from pipeline.checks import check_inputs, check_output
from pipeline.config import ConfigError, TrainConfig
from pipeline.plots import training_figure
from pipeline.resources import local_cluster_cpus
from pipeline.storage import Store, arrow_filesystem, filesystem
from pipeline.train_plan import Source, epoch_order

RUN_NAME = "checkpoints"
TRAINING_PLOT = "plots/training.png"


def run_train(config: TrainConfig) -> dict[str, Any]:
    config = with_absolute_paths(config)
    # Bad sources or output cost nothing: they are refused before anything is claimed, tokenized or started.
    check_inputs([source.path for source in config.data.sources], config.storage_options)
    inputs = input_files(config)
    check_enough_samples(config, sample_counts(config, inputs))
    check_output(config.output, config.storage_options)
    store = Store(config.output, config.storage_options)
    config_hash = config.config_hash()
    store.claim(config_hash, config.model_dump(mode="json"))
    scaling = config.scaling
    worker_cpus = scaling.num_workers * scaling.resources_per_worker.get("CPU", 1.0)
    if not (ray.is_initialized() or config.ray.address or os.environ.get("RAY_ADDRESS")):
        # Ray Train 2.60 with several Ray clusters on one host: its placement-group cleaner asks the wrong cluster's
        # state API, judges the controller dead and removes the run's workers. An unreachable API address makes it
        # skip the check (ENVIRONMENT.md, "Ray 2.60"). Only for the local cluster this job starts.
        os.environ.setdefault("RAY_API_SERVER_ADDRESS", UNREACHABLE_STATE_API)
    connect_ray(config.ray, local_cluster_cpus(worker_cpus, config.ray), quiet_train_logs=True)
    print(f"[train] config {config_hash}; {scaling.num_workers} workers, "
          f"{'GPU' if scaling.use_gpu else 'CPU'}, {config.strategy.kind}", flush=True)

    started = time.monotonic()
    tokenize_sources(config, store, inputs)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": config.model_dump(mode="json")},
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
            resources_per_worker=scaling.resources_per_worker or None,
        ),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=store.root,
            storage_filesystem=store.arrow_filesystem(),
            checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
            failure_config=FailureConfig(max_failures=config.max_failures),
            logging_config=LoggingConfig(log_level=logging.getLevelName(ray_log_level())),
        ),
    )
    result = trainer.fit()
    report = result.return_value
    summary = {
        "config_hash": config_hash,
        "output": config.output,
        "model": store.url.rstrip("/") + "/model",
        "last_checkpoint": os.path.basename(result.checkpoint.path) if result.checkpoint else None,
        **report,
        "plots": [store.url.rstrip("/") + "/" + TRAINING_PLOT],
        "wall_s": round(time.monotonic() - started, 1),
    }
    store.write_bytes(TRAINING_PLOT, training_figure(report["steps"]))
    store.write_text("summary.json", json.dumps(summary, indent=2))
    return summary


def sample_counts(config: TrainConfig, inputs: dict[str, list[str]]) -> dict[str, int]:
    """Samples per source, from the Parquet footers alone: known before anything starts."""
    counts = {}
    for source in config.data.sources:
        fs = arrow_filesystem(filesystem(source.path, config.storage_options)[0])
        try:
            counts[source.name] = sum(pq.read_metadata(path, filesystem=fs).num_rows for path in inputs[source.name])
        except (OSError, pa.ArrowInvalid) as err:
            raise ConfigError(f"data.sources.{source.name}: {source.path}: {err}") from None
    return counts


def check_enough_samples(config: TrainConfig, counts: dict[str, int]) -> None:
    """An epoch must fill at least one optimizer step of `global_batch_samples`; the plan (`TrainPlan`) refuses less
    too, but only once every worker has started, and each one then fails with its own trace."""
    sources = [Source(s.name, np.arange(counts[s.name]), s.weight) for s in config.data.sources]
    per_epoch = len(epoch_order(sources, config.data.seed, 0))
    if per_epoch < config.global_batch_samples:
        found = ", ".join(f"{s.name}: {counts[s.name]} at weight {s.weight:g}" for s in config.data.sources)
        raise ConfigError(
            f"data.sources: an epoch has {per_epoch} samples ({found}), fewer than one step of "
            f"global_batch_samples={config.global_batch_samples}"
        )


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """Local paths as the driver sees them: Ray workers run in another working directory."""
    def absolute(path: str) -> str:
        return path if "://" in path else os.path.abspath(path)

    sources = [s.model_copy(update={"path": absolute(s.path)}) for s in config.data.sources]
    model = os.path.abspath(config.model) if os.path.exists(config.model) else config.model
    return config.model_copy(update={
        "output": absolute(config.output), "model": model,
        "data": config.data.model_copy(update={"sources": sources}),
    })


def format_summary(summary: dict[str, Any]) -> str:
    steps = summary["steps"]
    lines = [f"distillery train summary  (config {summary['config_hash']}, output {summary['output']})"]
    for name, counts in summary["data"].items():
        lines.append(f"  source {name}: {counts['kept']} of {counts['samples']} samples trained on, dropped: "
                     f"{counts['over_max_seq_len']} over max_seq_len, {counts['no_assistant_tokens']} without "
                     f"assistant tokens, {counts['untokenizable']} untokenizable")
    plan = summary["plan"]
    lines.append(f"  plan: {plan['total_steps']} steps ({plan['steps_per_epoch']} per epoch), "
                 f"resumed at step {plan['resumed_at']}")
    if steps:
        tokens_per_s = sum(s["tokens_per_s"] for s in steps) / len(steps)
        mfu = sum(s["mfu"] for s in steps) / len(steps)
        lines.append(f"  this run: {len(steps)} steps, loss {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}, "
                     f"{tokens_per_s:,.0f} tok/s, MFU {100 * mfu:.1f}%, "
                     f"packing efficiency {100 * summary['packing_efficiency']:.1f}%")
    lines.append(f"  model: {summary['model']}")
    lines.append(f"  plots: {', '.join(summary['plots'])}")
    lines.append(f"  wall time: {summary['wall_s']} s")
    return "\n".join(lines)
