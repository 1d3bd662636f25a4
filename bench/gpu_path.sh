#!/usr/bin/env bash
# The GPU path (issue 16, item 5), as one script: distill ÷ raw vLLM on CUDA, then ZeRO-3 + flash-attention varlen
# training tokens/s and MFU, both with the embedded SmolLM2-135M-Instruct, on one GPU. Not run yet: no GPU machine
# was lent to the session that wrote it (docs/scale.md, "GPU path"). Record its figures there.
#
#   bash bench/gpu_path.sh                 # from the repository root; writes everything under $OUT (out/gpu_path)
#
# Needs a CUDA environment of distillery: the image of cluster/Dockerfile, or `make setup` on a host with
# nvidia-smi (the `gpu` extra), plus the `flash-attn` package for attn_implementation: flash_attention_2 (not part
# of `make setup`), and GSM8K's train file at ../shared/data/queries/gsm8k_train.jsonl (bench.distill_throughput
# reads it too). It stops at the first missing piece, before any measurement.
set -euo pipefail
OUT=${OUT:-out/gpu_path}
PY=${PY:-python}
GSM8K=${GSM8K:-../shared/data/queries/gsm8k_train.jsonl}
mkdir -p "$OUT"

"$PY" - "$GSM8K" <<'PYEOF'
import importlib.util, pathlib, sys
import torch
missing = [m for m in ("vllm", "flash_attn", "deepspeed") if importlib.util.find_spec(m) is None]
problems = [f"no module {m}" for m in missing]
if not torch.cuda.is_available():
    problems.append("torch sees no CUDA device")
if not pathlib.Path(sys.argv[1]).is_file():
    problems.append(f"{sys.argv[1]} is missing")
if problems:
    sys.exit("gpu_path: " + "; ".join(problems))
print("gpu_path:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
"$PY" -m jobs.prepare_model

# 1. Distill ÷ raw vLLM (and ÷ Ray Data LLM) on CUDA: same prompts, model, greedy sampling; each side alone.
#    Enough prompts to fill a GPU engine's batch, and long enough generations for the decode to dominate.
"$PY" -m bench.distill_throughput --prompts 512 --max-tokens 512 --num-gpus 1 2>&1 | tee "$OUT/distill_throughput.txt"

# 2. Training: ZeRO-3, bf16, flash-attention varlen over packed GSM8K reference solutions, one GPU worker. The
#    job prints tokens/s and MFU per step (against the GPU's data-sheet bf16 peak) and keeps them in summary.json.
"$PY" -m jobs.reference_samples --input "$GSM8K" --output "$OUT/reference/teachers/reference/accepted" --limit 4096
cat > "$OUT/train_gpu.yaml" <<YAML
# configs/train_cpu.yaml on a GPU: the same model and data, GPU settings.
model: smollm2-135m-instruct
data:
  sources:
    - name: gsm8k-reference
      path: $OUT/reference/teachers/reference/accepted
  max_seq_len: 8192
output: $OUT/train
epochs: 1
global_batch_samples: 256
precision: bf16
attn_implementation: flash_attention_2
gradient_checkpointing: false
optimizer: {lr: 2.0e-5, warmup_ratio: 0.1}
strategy: {kind: deepspeed, zero_stage: 3}
scaling: {num_workers: 1, use_gpu: true, resources_per_worker: {GPU: 1, CPU: 4}}
checkpoint_every_steps: 1000
YAML
"$PY" -m jobs.train --config "$OUT/train_gpu.yaml" 2>&1 | tee "$OUT/train.txt"
cp "$OUT/train/summary.json" "$OUT/train_summary.json"

# 3. The chunked SFT loss on the GPU (memory and time against all logits at once), for the 32k/152k-vocab case.
"$PY" -m bench.loss_memory --device cuda --tokens 32768 --hidden 5120 --chunks 1024 4096 2>&1 | tee "$OUT/loss_memory.txt"
echo "gpu_path: done; figures in $OUT"
