"""The function Ray Train runs on every rank: student SFT, top to bottom.

    data and plan → sharded model → resume → per step: packs (forward, loss, backward) → optimizer step
    → metrics → maybe a checkpoint → after the last step, the model exported as a Hugging Face folder

Every rank computes; rank 0 prints, records the dashboard metrics and writes the export. A checkpoint holds the
strategy's state (weights, optimizer) per rank, each rank's RNG state, and the number of steps done: the plan
(`pipeline.train_plan`) derives the data position from it, so a resumed run sees the same samples in the same
order and computes the same losses as one that never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import ray.train
import ray.train.torch

from actors.metrics import TrainMetrics
from actors.train_data import load_training_data, local_copy_dir
from actors.train_strategy import build_strategy
from pipeline.config import TrainConfig
from pipeline.flops import gpu_peak_flops, mfu
from pipeline.models import cache_dir, resolve_model
from pipeline.packing import PackingStats, build_pack, filler_pack
from pipeline.storage import Store
from pipeline.train_loss import backward_scale
from pipeline.train_plan import TrainPlan, warmup_cosine_lr

STATE_FILE = "train_state.json"
# Ray Train tees print() in workers to both stdout and its logger: a logger prints each line once.
log = logging.getLogger("distillery.train")
# Files in a checkpoint that belong to one rank only; every other file is read by all ranks.
_RANK_FILE = re.compile(r"(?:zero_pp_rank|rng_rank)_(\d+)(?!\d)")


def train_worker(job: dict[str, Any]) -> dict[str, Any] | None:
    config = TrainConfig.model_validate(job["config"])
    if not config.scaling.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported: gloo, no CUDA
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))  # JIT ops built once
    import torch
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    store = Store(config.output, config.storage_options)

    samples, sources, data_counts = load_training_data(config, store, context.get_local_rank() == 0, dist.barrier)
    plan = TrainPlan(
        samples.lengths, sources, config.global_batch_samples, config.data.max_seq_len, world_size, config.epochs,
        config.data.seed,
    )
    warmup_steps = math.ceil(config.optimizer.warmup_ratio * plan.total_steps)
    model_path = resolve_model(config.model, config.storage_options)
    strategy = build_strategy(config, model_path, device)
    start_step = restore(strategy, plan, rank)
    peak_flops = peak_flops_per_worker(config, device)
    pad_id = strategy.module.config.pad_token_id or 0
    metrics = TrainMetrics() if rank == 0 else None
    history, packing = [], PackingStats()
    if rank == 0:
        log.info("[train] %s; starting at step %d", describe(plan, data_counts), start_step)

    for step in range(start_step, plan.total_steps):
        started = time.perf_counter()
        packs = [build_pack(samples, ids) if ids else filler_pack(pad_id) for ids in plan.step(step)[rank]]
        step_targets = int(sum_over_ranks([sum(p.target_tokens for p in packs)], device)[0])
        scale = backward_scale(step_targets, world_size)
        loss_sum = 0.0
        for i, pack in enumerate(packs):
            loss = strategy.loss_sum(
                torch.as_tensor(pack.input_ids, device=device)[None],
                torch.as_tensor(pack.position_ids, device=device)[None],
                torch.as_tensor(pack.labels, device=device)[None],
                last=i == len(packs) - 1,
            )
            strategy.backward(loss * scale)
            loss_sum += loss.item()
        lr = warmup_cosine_lr(step, plan.total_steps, config.optimizer.lr, warmup_steps, config.optimizer.min_lr_ratio)
        grad_norm = strategy.step(lr)
        seconds = time.perf_counter() - started

        lengths = [n for p in packs for n in p.sample_lengths]
        real_packs = sum(1 for p in packs if p.sample_lengths)
        total_loss, tokens, flops, n_packs = sum_over_ranks(
            [loss_sum, sum(lengths), strategy.flops_model.training_flops(lengths), real_packs], device
        )
        packing.add(int(tokens), int(n_packs), config.data.max_seq_len)
        row = {
            "step": step + 1,
            "epoch": step // plan.steps_per_epoch + 1,
            "loss": total_loss / step_targets,
            "lr": lr,
            "grad_norm": grad_norm,
            "target_tokens": step_targets,
            "tokens_per_s": tokens / seconds,
            "mfu": mfu(flops, seconds, world_size, peak_flops),
            "packing_efficiency": tokens / (n_packs * config.data.max_seq_len),
            "packs": int(n_packs),
            "step_s": seconds,
        }
        done = step + 1 == plan.total_steps
        if (step + 1) % config.checkpoint_every_steps == 0 or done:
            with tempfile.TemporaryDirectory() as directory:
                save_checkpoint(strategy, plan, step + 1, rank, directory)
                ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(directory),
                                 checkpoint_dir_name=f"step_{step + 1:08d}")
        else:
            ray.train.report(row)
        if rank == 0:
            log.info(progress_line(row, plan.total_steps))
            metrics.record(row)
            history.append(row)

    export_model(strategy, model_path, store, rank)
    dist.barrier()
    if context.get_local_rank() == 0:
        shutil.rmtree(local_copy_dir(config, store), ignore_errors=True)
    if rank != 0:
        return None
    return {
        "steps": history,
        "data": data_counts,
        "plan": {"total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
                 "samples_per_epoch": plan.samples_per_epoch, "warmup_steps": warmup_steps, "resumed_at": start_step},
        "packing_efficiency": packing.efficiency,
    }


def sum_over_ranks(values: list[float], device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


# ---- checkpoints --------------------------------------------------------------------------------------------------


def save_checkpoint(strategy: Any, plan: TrainPlan, steps_done: int, rank: int, directory: str) -> None:
    """This rank's share: Ray Train merges the ranks' directories into one checkpoint in storage."""
    import torch

    strategy.save(os.path.join(directory, "model"))
    torch.save(rng_state(), os.path.join(directory, f"rng_rank_{rank}.pt"))
    if rank == 0:
        epoch, position = divmod(steps_done, plan.steps_per_epoch)
        state = {"steps_done": steps_done, "epoch": epoch, "position_in_epoch": position, **plan_identity(plan)}
        Path(directory, STATE_FILE).write_text(json.dumps(state, indent=2))


def restore(strategy: Any, plan: TrainPlan, rank: int) -> int:
    """Load the latest checkpoint Ray Train hands this run, if any; returns the number of steps already done."""
    import torch

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with tempfile.TemporaryDirectory() as directory:
        download_rank_files(checkpoint, directory, rank)
        state = json.loads(Path(directory, STATE_FILE).read_text())
        expected = plan_identity(plan)
        if {k: state[k] for k in expected} != expected:
            raise RuntimeError(f"the checkpoint was made with another plan: {state} (this run: {expected})")
        strategy.load(os.path.join(directory, "model"))
        set_rng_state(torch.load(os.path.join(directory, f"rng_rank_{rank}.pt"), weights_only=False))
    return state["steps_done"]


def plan_identity(plan: TrainPlan) -> dict[str, int]:
    return {"total_steps": plan.total_steps, "samples_per_epoch": plan.samples_per_epoch,
            "world_size": plan.world_size}


def download_rank_files(checkpoint: ray.train.Checkpoint, directory: str, rank: int) -> None:
    """Copy what this rank reads: shared files and its own shards, not the other ranks' optimizer states."""
    fs, root = checkpoint.filesystem, checkpoint.path.rstrip("/")
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = info.path[len(root) + 1:]
        owner = _RANK_FILE.search(os.path.basename(relative))
        if info.type != pafs.FileType.File or (owner and int(owner.group(1)) != rank):
            continue
        os.makedirs(os.path.dirname(os.path.join(directory, relative)), exist_ok=True)
        pafs.copy_files(info.path, os.path.join(directory, relative), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())


def rng_state() -> dict[str, Any]:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- export -------------------------------------------------------------------------------------------------------


def export_model(strategy: Any, model_path: str, store: Store, rank: int) -> None:
    """The trained weights as a standard Hugging Face folder (config, safetensors, tokenizer) at OUTPUT/model/."""
    state_dict = strategy.full_state_dict()  # collective: every rank takes part in gathering the shards
    if rank != 0:
        return
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as directory:
        strategy.module.config.use_cache = True  # off for packed training only
        strategy.module.save_pretrained(directory, state_dict=state_dict)
        AutoTokenizer.from_pretrained(model_path).save_pretrained(directory)
        store.remove("model")
        for name in sorted(os.listdir(directory)):
            target = store.path("model", name)
            store.fs.makedirs(os.path.dirname(target), exist_ok=True)
            store.fs.put_file(os.path.join(directory, name), target)


# ---- metrics ------------------------------------------------------------------------------------------------------


def peak_flops_per_worker(config: TrainConfig, device: Any) -> float:
    """The configured peak; else the GPU's data-sheet bf16 peak; else the measured matmul throughput of this worker's
    CPU share in the training dtype (CPUs have no single meaningful peak)."""
    import torch

    if config.scaling.peak_tflops_per_worker:
        return config.scaling.peak_tflops_per_worker * 1e12
    if device.type == "cuda" and (peak := gpu_peak_flops(torch.cuda.get_device_name(device))):
        return peak
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
    a, b = torch.randn(1024, 1024, dtype=dtype, device=device), torch.randn(1024, 1024, dtype=dtype, device=device)
    a @ b
    fastest = float("inf")
    for _ in range(3):  # the best of three: other processes share the CPU
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        fastest = min(fastest, time.perf_counter() - started)
    return 4 * 2 * 1024**3 / fastest


def describe(plan: TrainPlan, data_counts: dict[str, dict[str, int]]) -> str:
    sources = ", ".join(f"{name}: {c['kept']} of {c['samples']} samples" for name, c in data_counts.items())
    return (f"{sources}; {plan.samples_per_epoch} samples/epoch, {plan.steps_per_epoch} steps/epoch, "
            f"{plan.total_steps} steps on {plan.world_size} workers")


def progress_line(row: dict[str, Any], total_steps: int) -> str:
    return (
        f"[train] step {row['step']}/{total_steps} epoch {row['epoch']} loss {row['loss']:.4f} lr {row['lr']:.2e} "
        f"grad_norm {row['grad_norm']:.3f} | {row['tokens_per_s']:,.0f} tok/s, MFU {100 * row['mfu']:.1f}%, "
        f"packing {100 * row['packing_efficiency']:.1f}% ({row['packs']} packs), {row['step_s']:.2f} s"
    )
