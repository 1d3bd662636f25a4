"""Peak memory and time of the SFT loss: logits of every labelled position at once (the baseline) against
`pipeline.train_loss`'s chunked loss, on the same bf16 hidden states and output layer.

    python -m bench.loss_memory [--tokens 4096] [--vocab 152064] [--hidden 896] [--chunks 512 2048] [--device cuda]

Both do the same work: the baseline also computes logits for the labelled positions only, so what differs is that
the chunked loss never holds more than one chunk's logits (and recomputes them in backward). Each variant runs
forward and backward in a fresh process and reports its peak memory above what the inputs already took (resident
memory on CPU, allocated device memory on CUDA), so the numbers do not depend on what ran before. The defaults are
Qwen2.5's vocabulary and Qwen2.5-0.5B's width, with 4,096 tokens of which 80% are labelled (an answer-heavy
reasoning sample); the paper's setting is `--tokens 32768 --hidden 5120` (Qwen2.5-32B) on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from pipeline.packing import IGNORE_INDEX


def run_variant(tokens: int, vocab: int, hidden: int, chunk: int | None, device: str, repeats: int) -> dict:
    """In this process: build the inputs, then a warm-up and `repeats` timed steps (forward and backward); the
    median step's time."""
    import torch
    import torch.nn.functional as F

    from pipeline.train_loss import token_loss_sum

    torch.manual_seed(0)
    states = torch.randn(tokens, hidden, dtype=torch.bfloat16, device=device, requires_grad=True)
    weight = (torch.randn(vocab, hidden, device=device) / hidden**0.5).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,), device=device)
    labels[: tokens // 5] = IGNORE_INDEX  # the prompt
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def step():
        if chunk is None:
            targets = (labels != IGNORE_INDEX).nonzero().squeeze(1)
            logits = F.linear(states[targets], weight).float()
            loss = F.cross_entropy(logits, labels[targets], reduction="sum")
        else:
            loss = token_loss_sum(states, weight, labels, chunk)
        loss.backward()
        states.grad = weight.grad = None
        if cuda:
            torch.cuda.synchronize()
        return loss

    step()  # the first step pays for kernel selection and allocator growth: not timed
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"loss": loss.item(), "seconds": seconds, "peak_mb": (peak - before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=152064)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--chunks", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to measure on a GPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # set in the child processes
    args = parser.parse_args()
    if args.variant is not None:
        chunk = None if args.variant == "full" else int(args.variant)
        print(json.dumps(run_variant(args.tokens, args.vocab, args.hidden, chunk, args.device, args.repeats)))
        return

    results = {}
    for variant in ["full", *map(str, args.chunks)]:
        command = [sys.executable, "-m", "bench.loss_memory", "--tokens", str(args.tokens), "--vocab",
                   str(args.vocab), "--hidden", str(args.hidden), "--device", args.device,
                   "--repeats", str(args.repeats), "--variant", variant]
        results[variant] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    full = results["full"]
    print(f"{args.tokens} tokens, vocabulary {args.vocab}, width {args.hidden}; "
          f"on {args.device}; all labelled logits at once: peak {full['peak_mb']:.0f} MB above the inputs, "
          f"{full['seconds']:.3f} s")
    for chunk in args.chunks:
        r = results[str(chunk)]
        print(f"chunks of {chunk}: peak {r['peak_mb']:.0f} MB ({r['peak_mb'] / full['peak_mb']:.2f} of full), "
              f"time {r['seconds'] / full['seconds']:.2f} of full, loss differs by "
              f"{abs(r['loss'] - full['loss']) / full['loss']:.1e} (relative)")


if __name__ == "__main__":
    main()
