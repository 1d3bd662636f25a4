"""Benchmark: queries per second per core for each preprocessing step, on all shared queries against all shared
benchmarks and HumanEval, and what that makes of a 1.89M-query corpus.

Each step runs in this one process on one thread and is timed in CPU seconds of the process, so the rates are per
core and little affected by other work on a shared machine. The embedding step runs on a sample (it is by far the
slowest on CPU), once per backend: torch (sentence-transformers, the baseline), onnx and onnx-int8 (the job's
default), each on one thread, with the ratio to torch measured in the same run. The projection sums core-seconds per
step with the configured backend; Ray's own overhead (scheduling, the two shuffles, Parquet) is what the job's
measured wall time adds on top (see README).

    python -m bench.preprocess_throughput [--embed-sample 512] [--corpus 1890000] [--cores 64]
"""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.config import PreprocessConfig
from pipeline.loaders import jsonl_lines, parse_json_line
from pipeline.preprocess.benchmarks import HUMANEVAL, benchmark_items, resolve_benchmark
from pipeline.preprocess.decontaminate import BenchmarkIndex, nearest_items
from pipeline.preprocess.dedup import bucket_pairs, exact_duplicates, near_duplicates
from pipeline.preprocess.embeddings import Embedder
from pipeline.preprocess.filters import QueryText, first_failure
from pipeline.preprocess.normalize import match_key, near_form, normalize
from pipeline.preprocess.steps import minhasher, partition_of, prepare_batch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(rows: int, step: Callable[[], Any]) -> tuple[Any, dict]:
    started = time.process_time()
    result = step()
    seconds = time.process_time() - started
    return result, {"rows": rows, "cpu_s": round(seconds, 3), "per_s_per_core": round(rows / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embed-sample", type=int, default=512, help="queries embedded (CPU embedding is slow)")
    parser.add_argument("--corpus", type=int, default=1_890_000, help="queries in the projected corpus")
    parser.add_argument("--cores", type=int, default=64, help="CPU cores of the projected cluster")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # one core, like every other step here
    config = PreprocessConfig()
    paths = sorted(str(p) for p in (DATA / "queries").glob("*.jsonl"))
    lines = [line for path in paths for line in jsonl_lines(path, Path(path).read_bytes())]
    items = [
        item for path in map(resolve_benchmark, [*sorted(str(p) for p in (DATA / "benchmarks").glob("*.jsonl")),
                                                 HUMANEVAL])
        for item in benchmark_items(path, Path(path).read_bytes())
    ]
    steps: dict[str, dict] = {}

    queries, steps["parse (loaders)"] = timed(len(lines), lambda: [
        q for line in lines if not hasattr(q := parse_json_line(line["raw"], line["source"]), "reason")
    ])
    originals = ["\n".join(q.user_turns()) for q in queries]
    texts, steps["normalize"] = timed(len(queries), lambda: [normalize(t) for t in originals])
    _, steps["filters"] = timed(len(queries), lambda: [
        first_failure(QueryText(o, t, q.category.value), config.filters) for o, t, q in zip(originals, texts, queries)
    ])
    keys, steps["match key + hash partition"] = timed(len(queries), lambda: [
        (key, partition_of(key, config.dedup.partitions)) for key in map(match_key, texts)
    ])
    keys = [key for key, _ in keys]
    ranks = [f"{i:012d}" for i in range(len(keys))]
    _, steps["exact dedup (one partition)"] = timed(len(keys), lambda: exact_duplicates(keys, ranks))

    hasher = minhasher(config.dedup.near)
    forms, steps["near form (numbers in digits, words)"] = timed(len(texts), lambda: [near_form(t) for t in texts])
    (signatures, _), steps["minhash signatures (5-char shingles, rensa flat batches)"] = timed(
        len(forms), lambda: [hasher.form_signatures(forms[i:i + 1024]) for i in range(0, len(forms), 1024)][-1]
    )
    signatures = hasher.form_signatures(forms)[0]
    band_keys, steps["lsh band keys"] = timed(len(signatures), lambda: hasher.band_keys(signatures))
    pairs, steps["lsh buckets to candidate pairs"] = timed(len(signatures), lambda: [
        pair for band in range(hasher.bands) for pair in bucket_pairs(band_keys[:, band].tolist(), ranks)
    ])
    by_rank = dict(zip(ranks, signatures))
    _, steps["verify pairs + union-find"] = timed(len(signatures), lambda: near_duplicates(
        sorted(set(pairs)), by_rank, config.dedup.near.threshold
    ))

    index, steps["build benchmark index (per worker, per item)"] = timed(len(items), lambda: BenchmarkIndex(
        items, config.decontamination.ngram_size, config.decontamination.ngram_threshold
    ))
    _, steps["decontaminate exact + n-gram"] = timed(len(keys), lambda: [
        index.exact(k) or index.ngram(k) for k in keys
    ])

    embedding = config.decontamination.embedding
    sample = texts[:: max(1, len(texts) // args.embed_sample)][: args.embed_sample]
    embedded: dict[str, dict] = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        embed = Embedder(embedding.model, embedding.batch_size, backend=backend, threads=1)
        embed(sample[:8])  # warm-up: onnxruntime plans its kernels on the first batches
        vectors, embedded[backend] = timed(len(sample), lambda: embed(sample))
        if backend == embedding.backend:
            item_vectors, steps["embed benchmark items (per replica, per item)"] = timed(
                len(items), lambda: embed([i.text for i in items])
            )
            steps[f"embed queries ({embedding.model}, {backend}, 1 thread)"] = embedded[backend]
            _, steps["nearest benchmark item (exact search)"] = timed(
                len(sample), lambda: nearest_items(vectors, item_vectors)
            )
    for backend, measured in embedded.items():
        measured["÷ torch"] = round(measured["per_s_per_core"] / embedded["torch"]["per_s_per_core"], 2)

    stream_rows = pa.Table.from_pylist(lines)
    _, steps["step 1 as the job runs it (parse .. signature)"] = timed(
        len(lines), lambda: prepare_batch(stream_rows, paths, config)
    )

    per_query_steps = {name: s for name, s in steps.items() if "per replica" not in name and "per worker" not in name
                       and not name.startswith("step 1")}
    cpu = {name: args.corpus / s["per_s_per_core"] for name, s in per_query_steps.items()}
    embedding_name = next(name for name in cpu if name.startswith("embed queries"))
    without_embedding = sum(s for name, s in cpu.items() if name != embedding_name)
    report = {
        "queries": len(queries),
        "benchmark_items": len(items),
        "steps": steps,
        "embedding backends (same sample, 1 thread)": embedded,
        "projection": {
            "corpus": args.corpus,
            "core_hours_without_embedding": round(without_embedding / 3600, 2),
            "core_hours_cpu_embedding": round(cpu[embedding_name] / 3600, 1),
            "core_hours_cpu_embedding_per_backend": {
                backend: round(args.corpus / m["per_s_per_core"] / 3600, 1) for backend, m in embedded.items()
            },
            f"wall_minutes_on_{args.cores}_cores_without_embedding": round(without_embedding / args.cores / 60, 1),
            f"wall_hours_on_{args.cores}_cores_with_cpu_embedding": round(
                (without_embedding + cpu[embedding_name]) / args.cores / 3600, 2
            ),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
