"""Peak memory and time of the SFT loss: logits of the whole pack (the baseline) against `pipeline.train_loss`'s
chunked loss over labelled positions, on the same bf16 hidden states and output layer.

    python -m bench.loss_memory [--tokens 4096] [--vocab 152064] [--hidden 896] [--chunks 512 2048]

Each variant runs forward and backward in a fresh process and reports its peak resident memory above what the inputs
already took, so the numbers do not depend on what ran before. The defaults are Qwen2.5's vocabulary and
Qwen2.5-0.5B's width, with 4,096 tokens of which 80% are labelled (an answer-heavy reasoning sample).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from pipeline.packing import IGNORE_INDEX


def run_variant(tokens: int, vocab: int, hidden: int, chunk: int | None) -> dict:
    """In this process: build the inputs, then one forward and backward of the loss."""
    import torch
    import torch.nn.functional as F

    from pipeline.train_loss import token_loss_sum

    torch.manual_seed(0)
    states = torch.randn(tokens, hidden, dtype=torch.bfloat16, requires_grad=True)
    weight = (torch.randn(vocab, hidden) / hidden**0.5).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,))
    labels[: tokens // 5] = IGNORE_INDEX  # the prompt
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if chunk is None:
        logits = F.linear(states, weight).float()
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    else:
        loss = token_loss_sum(states, weight, labels, chunk)
    loss.backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"loss": loss.item(), "seconds": seconds, "peak_mb": (peak - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=152064)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--chunks", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # set in the child processes
    args = parser.parse_args()
    if args.variant is not None:
        chunk = None if args.variant == "full" else int(args.variant)
        print(json.dumps(run_variant(args.tokens, args.vocab, args.hidden, chunk)))
        return

    results = {}
    for variant in ["full", *map(str, args.chunks)]:
        command = [sys.executable, "-m", "bench.loss_memory", "--tokens", str(args.tokens), "--vocab",
                   str(args.vocab), "--hidden", str(args.hidden), "--variant", variant]
        results[variant] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    full = results["full"]
    print(f"{args.tokens} tokens, vocabulary {args.vocab}, width {args.hidden}; "
          f"full logits: peak {full['peak_mb']:.0f} MB above the inputs, {full['seconds']:.2f} s")
    for chunk in args.chunks:
        r = results[str(chunk)]
        print(f"chunks of {chunk}: peak {r['peak_mb']:.0f} MB ({r['peak_mb'] / full['peak_mb']:.2f} of full), "
              f"time {r['seconds'] / full['seconds']:.2f} of full, loss differs by "
              f"{abs(r['loss'] - full['loss']) / full['loss']:.1e} (relative)")


if __name__ == "__main__":
    main()
