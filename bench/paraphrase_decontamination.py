"""Paraphrases against template twins: which decontamination setting catches reworded benchmark problems without
flagging template twins (the same story with other numbers: another problem).

Planted from the shared benchmarks, deterministically (`plant`):
  - rewordings: an item with words swapped for synonyms, small numbers spelled out or large ones given thousands
    separators, the question moved to the front, and a lead-in sentence (every number of the item kept);
  - twins: an item with one of its numbers changed (the hardest twin), and a rewording with one number changed
    (not for HumanEval: a code problem with one example's number changed is a wrong example, not another problem);
plus the 30 hand-reworded problems of `tests/data/reworded_benchmarks.jsonl`, 12 restructured ones
(`reworded_benchmarks_hard.jsonl`: sentences reordered and rewritten, cosine 0.72–0.92), and the real twins inside the
benchmarks: every item against all *other* items (leave one out), counting items whose nearest other item has
cosine ≥ 0.8, the ones a plain threshold would flag.

Each setting runs the whole decontamination (exact, n-gram, embedding) except the leave-one-out, which runs the
embedding rule. Rewordings count when flagged *with their own item*; twins when flagged at all.

    python -m bench.paraphrase_decontamination [--per-benchmark 100] [--backend onnx-int8]
"""

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from pipeline.preprocess.benchmarks import HUMANEVAL, BenchmarkItem, benchmark_items, resolve_benchmark
from pipeline.preprocess.decontaminate import BenchmarkIndex, EmbeddingMatcher, EmbeddingRule, numbers_of, top_items
from pipeline.preprocess.embeddings import EMBEDDED_EMBEDDING_MODEL, Embedder
from pipeline.preprocess.normalize import match_key, normalize

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(str(p) for p in (REPO.parent / "shared" / "data" / "benchmarks").glob("*.jsonl")) + [HUMANEVAL]
REWORDED = REPO / "tests" / "data" / "reworded_benchmarks.jsonl"
REWORDED_HARD = REPO / "tests" / "data" / "reworded_benchmarks_hard.jsonl"

SYNONYMS = [
    ("wants to", "would like to"), ("buys", "purchases"), ("bought", "purchased"), ("sells", "sold off"),
    ("How many", "What number of"), ("how many", "what number of"), ("Find", "Determine"), ("find", "determine"),
    ("Compute", "Calculate"), ("compute", "calculate"), ("What is", "What's"), ("gets", "receives"),
    ("gives", "hands"), ("starts", "begins"), ("needs", "requires"), ("total", "overall"), ("If", "Suppose"),
    ("Let", "Suppose"), ("smallest", "least"), ("largest", "greatest"), ("positive integer", "positive whole number"),
    ("the sum of", "the total of"), ("each", "every"), ("also", "as well"), ("large", "big"), ("small", "little"),
]
LEAD_INS = ["Here is a problem for you.", "Solve the following.", "Try this one.", "A question from my homework:"]
SPELLED = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
          "seventeen eighteen nineteen twenty".split()
# A number in running text, not inside LaTeX math (where spelling it out would change the notation).
_NUMBER = re.compile(r"(?<![\w.,$^_{])(\d+)(?![\w.,}])")


def reword(text: str, rng: random.Random) -> str:
    """A rewording that keeps every number: synonyms, numbers respelled, question first, a lead-in."""
    outside_math = text.split("$")
    for k in range(0, len(outside_math), 2):  # even pieces are outside $…$
        piece = outside_math[k]
        for old, new in SYNONYMS:
            piece = re.sub(rf"\b{re.escape(old)}\b", new, piece)
        piece = _NUMBER.sub(lambda m: _respell(int(m.group(1))), piece)
        outside_math[k] = piece
    text = "$".join(outside_math)
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
    if len(sentences) > 1 and sentences[-1].endswith("?") and "$" not in sentences[-1]:
        text = " ".join([sentences[-1], "Details:", *sentences[:-1]])
    return f"{rng.choice(LEAD_INS)} {text}"


def _respell(n: int) -> str:
    return SPELLED[n] if n <= 20 else f"{n:,}"


def twin(text: str, rng: random.Random) -> str | None:
    """The same text with one of its numbers (digits, anywhere) changed; None when it states none in digits."""
    spans = [m.span() for m in re.finditer(r"(?<![\d.])\d+(?![\d])", text)]
    if not spans:
        return None
    start, end = spans[rng.randrange(len(spans))]
    value = int(text[start:end])
    return text[:start] + str(value + rng.choice([1, 2, 3, 5]) if value < 10 else value * 2) + text[end:]


def plant(items: list[BenchmarkItem], per_benchmark: int, seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """(text, index of the item it comes from) per kind; the same items and texts for the same arguments."""
    rng = random.Random(seed)
    by_source: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_source.setdefault(item.source, []).append(i)
    planted: dict[str, list[tuple[str, int]]] = {"rewording": [], "twin": [], "reworded twin": []}
    for source in sorted(by_source):
        chosen = [i for i in by_source[source] if numbers_of(items[i].text)]
        for i in rng.sample(chosen, min(per_benchmark, len(chosen))):
            reworded = reword(items[i].text, rng)
            planted["rewording"].append((reworded, i))
            if source == "HumanEval":
                continue  # a code problem with one example's number changed is a wrong example, not another problem
            for kind, text in (("twin", twin(items[i].text, rng)), ("reworded twin", twin(reworded, rng))):
                if text is not None and numbers_of(normalize(text)) != numbers_of(items[i].text):
                    planted[kind].append((text, i))
    return planted


def decide(texts: list[str], vectors: np.ndarray, index: BenchmarkIndex, matcher: EmbeddingMatcher | None,
           plain_threshold: float | None, item_vectors: np.ndarray) -> list[int | None]:
    """The item each query is flagged for, or None: the job's chain (exact, n-gram, embedding rule), or with
    `plain_threshold` the cosine of the nearest item alone (today's rule)."""
    if plain_threshold is not None:
        nearest, similarity = top_items(vectors, item_vectors, 1)
        return [int(n[0]) if s[0] >= plain_threshold else None for n, s in zip(nearest, similarity)]
    position = {id(item): i for i, item in enumerate(index.items)}
    flagged: list[int | None] = []
    embedded = matcher.matches(texts, vectors)
    for text, by_embedding in zip(texts, embedded):
        key = match_key(text)
        match = index.exact(key) or index.ngram(key) or by_embedding
        flagged.append(None if match is None else position[id(match.item)])
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_EMBEDDING_MODEL)
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--per-benchmark", type=int, default=100, help="items planted per benchmark")
    args = parser.parse_args()

    paths = map(resolve_benchmark, BENCHMARKS)
    items = [item for path in paths for item in benchmark_items(path, Path(path).read_bytes())]
    planted = plant(items, args.per_benchmark)
    position = {(item.source, item.id): i for i, item in enumerate(items)}
    hand = [json.loads(line) for line in REWORDED.read_text().splitlines()]
    planted["hand rewording"] = [(r["prompt"], position[(r["matched_source"], r["matched_id"])]) for r in hand]
    hard = [json.loads(line) for line in REWORDED_HARD.read_text().splitlines()]
    planted["restructured rewording"] = [(r["prompt"], position[(r["matched_source"], r["matched_id"])]) for r in hard]
    embed = Embedder(args.model, batch_size=32, backend=args.backend)
    item_vectors = embed([item.text for item in items])
    texts = {kind: [normalize(text) for text, _ in rows] for kind, rows in planted.items()}
    vectors = {kind: embed(texts[kind]) for kind in planted}
    index = BenchmarkIndex(items, 8, 0.5)

    # Leave one out: each item's nearest *other* items; the real twins are those with one at cosine ≥ 0.8.
    nearest, similarity = top_items(item_vectors, item_vectors, 6)
    keep = nearest != np.arange(len(items))[:, None]
    nearest = np.array([row[k][:5] for row, k in zip(nearest, keep)])
    similarity = np.array([row[k][:5] for row, k in zip(similarity, keep)])
    close = similarity[:, 0] >= 0.8
    item_numbers = [numbers_of(item.text) for item in items]

    settings = [("cosine ≥ %.2f, numbers ignored (today)" % t, None, t) for t in (0.8, 0.85, 0.9)] + [
        (f"numbers; gray zone {gray:.2f}–0.85 from {least} numbers", EmbeddingRule(0.85, gray, least), None)
        for least in (2, 3, 4) for gray in (0.55, 0.6, 0.65, 0.7, 0.75)
    ]
    table = []
    for name, rule, plain in settings:
        matcher = EmbeddingMatcher(items, item_vectors, rule) if rule else None
        row = {"setting": name}
        for kind, rows in planted.items():
            flagged = decide(texts[kind], vectors[kind], index, matcher, plain, item_vectors)
            is_rewording = kind.endswith("rewording")
            hits = [f == i if is_rewording else f is not None for f, (_, i) in zip(flagged, rows)]
            row[kind] = round(float(np.mean(hits)), 3)
        if rule:
            loo = [rule.match(item_numbers[i], nearest[i], similarity[i], items, item_numbers) is not None
                   for i in range(len(items))]
        else:
            loo = list(similarity[:, 0] >= plain)
        row["real twins (nearest other ≥ 0.8)"] = round(float(np.mean(np.array(loo)[close])), 3)
        row["all items vs the others"] = round(float(np.mean(loo)), 4)
        table.append(row)
    print(json.dumps({"model": args.model, "backend": args.backend, "benchmark_items": len(items),
                      "planted": {k: len(v) for k, v in planted.items()}, "real twins": int(close.sum())}, indent=2))
    columns = list(table[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
