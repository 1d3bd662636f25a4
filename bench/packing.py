"""Benchmark: packing efficiency and training tokens/s, packed against padded, on a real length distribution.

Samples are GSM8K and MATH reference solutions in the paper's format (pipeline/reference_samples.py), tokenized with
the embedded SmolLM2's chat template. Each optimizer step takes `--step-samples` of them, as the training job does.

- Packed: the step's samples first-fit-decreasing into rows of `--max-seq-len`, positions restarting per sample,
  no attention mask (what `jobs.train` runs).
- Padded: the classic alternative, micro-batches of `--batch` samples in data order, padded to the longest, with an
  attention mask.

Efficiency is real tokens ÷ token slots (a pack's slots are `max_seq_len`; a padded micro-batch's are its samples
times the longest). Tokens/s is forward + backward on this CPU (sdpa, fp32, one process) of SmolLM2-135M cut to its
first `--layers` decoder layers (the per-layer balance of attention and matmuls is kept; the time is not), real
tokens only, the two layouts alternated `--rounds` times and the fastest pass of each kept.

    python -m bench.packing [--samples 2000] [--max-seq-len 1024 2048 4096] [--layers 6]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pipeline.loaders import source_name
from pipeline.packing import (
    PackingStats,
    TokenizedSamples,
    build_pack,
    build_padded_batch,
    first_fit_decreasing,
    tokenize_conversation,
)
from pipeline.reference_samples import reference_samples
from pipeline.train_loss import LossHead

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "queries"


def tokenized_samples(tokenizer, per_file: int) -> TokenizedSamples:
    rows = []
    for name in ("gsm8k_train.jsonl", "math_train.jsonl"):
        lines = (DATA / name).read_text().splitlines()
        for sample in list(reference_samples(lines, source_name(name)))[:per_file]:
            rows.append(tokenize_conversation(tokenizer, [m.model_dump() for m in sample.messages]))
    order = np.random.default_rng(0).permutation(len(rows))  # mixed, as an epoch's order is
    return TokenizedSamples.from_rows([rows[i] for i in order])


def layouts(samples, step_samples: int, max_seq_len: int, batch: int):
    """Per step: packed rows (lists of sample indices) and padded micro-batches, over the samples that fit."""
    usable = np.flatnonzero(samples.lengths <= max_seq_len)
    steps = [usable[i:i + step_samples] for i in range(0, len(usable) - step_samples + 1, step_samples)]
    packed = [[[int(step[j]) for j in b] for b in first_fit_decreasing(samples.lengths[step], max_seq_len)]
              for step in steps]
    padded = [[step[i:i + batch].tolist() for i in range(0, len(step), batch)] for step in steps]
    return packed, padded, len(samples) - len(usable)


def efficiency(samples, packed, padded, max_seq_len: int) -> dict:
    packing = PackingStats()
    padding = PackingStats()
    for rows in packed:
        packing.add(int(sum(samples.lengths[i] for r in rows for i in r)), len(rows), max_seq_len)
    for batches in padded:
        for b in batches:
            padding.add(int(samples.lengths[b].sum()), len(b), int(samples.lengths[b].max()))
    return {"packed": round(packing.efficiency, 4), "padded": round(padding.efficiency, 4)}


def train_seconds(model, head: LossHead, samples, micro_batches, packed: bool) -> float:
    import torch

    started = time.perf_counter()
    for indices in micro_batches:
        if packed:
            pack = build_pack(samples, indices)
            loss = head.loss_sum(model, torch.as_tensor(pack.labels)[None],
                                 input_ids=torch.as_tensor(pack.input_ids)[None],
                                 position_ids=torch.as_tensor(pack.position_ids)[None])
        else:
            batch = build_padded_batch(samples, indices, pad_id=0)
            loss = head.loss_sum(model, torch.as_tensor(batch.labels), input_ids=torch.as_tensor(batch.input_ids),
                                 attention_mask=torch.as_tensor(batch.attention_mask))
        loss.backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="per dataset (GSM8K, MATH)")
    parser.add_argument("--step-samples", type=int, default=64, help="samples per optimizer step (the paper: 64)")
    parser.add_argument("--max-seq-len", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=8, help="samples per padded micro-batch")
    parser.add_argument("--layers", type=int, default=6, help="SmolLM2 decoder layers kept for the timing (of 30)")
    parser.add_argument("--timed-samples", type=int, default=16, help="samples trained for tokens/s, per layout")
    parser.add_argument("--rounds", type=int, default=3, help="the layouts alternate; each keeps its fastest round")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.models import materialize_embedded_model

    model_dir = materialize_embedded_model()
    samples = tokenized_samples(AutoTokenizer.from_pretrained(model_dir), args.samples)
    result = {
        "samples": len(samples),
        "tokens_per_sample": {f"p{q}": int(np.percentile(samples.lengths, q)) for q in (5, 50, 95, 100)},
        "efficiency": {},
    }
    for max_seq_len in args.max_seq_len:
        packed, padded, dropped = layouts(samples, args.step_samples, max_seq_len, args.batch)
        result["efficiency"][f"max_seq_len={max_seq_len}"] = {
            **efficiency(samples, packed, padded, max_seq_len), "dropped_over_max_seq_len": dropped}

    # Timing: the smallest max_seq_len, on the first `timed_samples` samples (one step of that size).
    packed, padded, _ = layouts(samples, args.timed_samples, args.max_seq_len[0], args.batch)
    packed, padded = packed[0], padded[0]
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="sdpa", num_hidden_layers=args.layers)
    head = LossHead(model, chunk_tokens=2048)  # as jobs.train computes the loss
    real_tokens = int(sum(samples.lengths[i] for row in packed for i in row))
    best = {"packed": float("inf"), "padded": float("inf")}
    for _ in range(args.rounds):
        for name, micro_batches in (("packed", packed), ("padded", padded)):
            best[name] = min(best[name], train_seconds(model, head, samples, micro_batches, name == "packed"))
            model.zero_grad(set_to_none=True)
    padded_slots = int(sum(len(b) * samples.lengths[b].max() for b in padded))
    result["timing"] = {
        # Packs are not padded to max_seq_len: the packed layout computes exactly the real tokens.
        "max_seq_len": args.max_seq_len[0], "real_tokens": real_tokens, "packs": len(packed),
        "padded_micro_batches": len(padded), "padded_slots_computed": padded_slots,
        "train_tokens_per_s": {name: round(real_tokens / s, 1) for name, s in best.items()},
        "speedup_packed_over_padded": round(best["padded"] / best["packed"], 3),
        "model": f"SmolLM2-135M, first {args.layers} of 30 layers, fp32, sdpa", "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
