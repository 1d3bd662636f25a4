"""Calibration: which cosine threshold makes an embedding model catch reworded benchmark problems without matching
different problems of the same benchmark.

Positives: hand-reworded benchmark problems (tests/data/reworded_benchmarks.jsonl), each against its original.
Negatives: every benchmark item against its nearest *other* item of the same benchmark; those are different
problems, often from one template. For each threshold it reports the share of rewordings caught (and attributed to
the right item) and the share of items whose nearest neighbour in their own benchmark would be a match.

    python -m bench.embedding_threshold [--model all-minilm-l6-v2] [--backend torch|onnx|onnx-int8]

Cosine alone, numbers ignored: `bench.paraphrase_decontamination` measures the rule the job applies.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.preprocess.benchmarks import HUMANEVAL, benchmark_items, resolve_benchmark
from pipeline.preprocess.embeddings import EMBEDDED_EMBEDDING_MODEL, Embedder
from pipeline.preprocess.normalize import normalize

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(str(p) for p in (REPO.parent / "shared" / "data" / "benchmarks").glob("*.jsonl")) + [HUMANEVAL]
REWORDED = REPO / "tests" / "data" / "reworded_benchmarks.jsonl"
THRESHOLDS = [0.75, 0.8, 0.825, 0.85, 0.875, 0.9, 0.95]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_EMBEDDING_MODEL)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    args = parser.parse_args()

    paths = map(resolve_benchmark, BENCHMARKS)
    items = [item for path in paths for item in benchmark_items(path, Path(path).read_bytes())]
    reworded = [json.loads(line) for line in REWORDED.read_text().splitlines()]
    embed = Embedder(args.model, batch_size=32, backend=args.backend)
    vectors = embed([item.text for item in items])
    queries = embed([normalize(r["prompt"]) for r in reworded])

    position = {(item.source, item.id): i for i, item in enumerate(items)}
    originals = [position[(r["matched_source"], r["matched_id"])] for r in reworded]
    positive = np.einsum("ij,ij->i", queries, vectors[originals])
    attributed = (queries @ vectors.T).argmax(axis=1) == np.array(originals)

    sources = np.array([item.source for item in items])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1.0)
    similarity[sources[:, None] != sources[None, :]] = -1.0
    negative = similarity.max(axis=1)

    report = {
        "model": args.model,
        "backend": args.backend,
        "rewordings": len(reworded),
        "benchmark_items": len(items),
        "reworded_cosine": {"min": round(float(positive.min()), 3), "median": round(float(np.median(positive)), 3)},
        "nearest_other_item_cosine": {
            "median": round(float(np.median(negative)), 3),
            "p99": round(float(np.quantile(negative, 0.99)), 3),
            "max": round(float(negative.max()), 3),
        },
        "by_threshold": {
            t: {
                "rewordings_caught": round(float(np.mean((positive >= t) & attributed)), 3),
                "items_matching_another_item": round(float(np.mean(negative >= t)), 4),
            }
            for t in THRESHOLDS
        },
    }
    print(json.dumps(report, indent=2))
    for i in np.argsort(-negative)[:5]:
        j = int(similarity[i].argmax())
        print(f"{negative[i]:.3f}  {items[i].id}: {items[i].text[:90]!r}\n       {items[j].id}: {items[j].text[:90]!r}")


if __name__ == "__main__":
    main()
