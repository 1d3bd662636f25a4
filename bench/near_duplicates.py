"""Benchmark: near duplicates caught, and distinct problems merged, per shingling and threshold; MinHash speed.

A planted set built from the shared data, deterministically (seeded): short problems (GSM8K and MATH train, at most
60 words) and long ones (AtCoder statements), each with variants that people would call duplicates, one or two edits
away (a word or phrase swapped, a number spelled out or written otherwise, punctuation, LaTeX layout), and short
problems' template twins (the same text with one number changed: another problem). Every setting runs the job's own
code (`MinHasher`, LSH buckets, `near_duplicates`) over all GSM8K, MATH and AtCoder problems plus the planted rows,
with exact duplicates (same match key) grouped first as the job does. Reported per setting:

- recall: variants that end in their original's group, for short and long problems, one and two edits;
- twins merged: template twins that end in their original's group;
- originals dropped: shared-data problems that end in another one's group (a few are real duplicates: formatting
  only; most differ by one word, "sum"/"product", "at least"/"exactly": distinct problems; `--examples` lists them).

Then MinHash signatures per second per core (CPU seconds of this one thread), from normalized text: rensa's plain
per-document API (`RMinHash.update` per text) and the batch of token lists the job used before, against
`MinHasher.signatures` (numpy n-gram hashes, one call into rensa per batch).

    python -m bench.near_duplicates [--sample 1500] [--seed 0] [--json out.json] [--examples 10]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.loaders import jsonl_lines, parse_json_line
from pipeline.preprocess.dedup import MinHasher, exact_duplicates, near_duplicates_in_memory
from pipeline.preprocess.normalize import match_key, normalize, words

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHORT_WORDS, LONG_WORDS = 60, 100

# Phrases a rewording swaps without changing the problem; each direction is one edit.
SYNONYMS = {
    "wants to": "would like to", "would like to": "wants to", "how many": "what number of", "buys": "purchases",
    "bought": "purchased", "find": "determine", "determine": "find", "compute": "calculate", "calculate": "compute",
    "each": "every", "gets": "receives", "gave": "handed", "then": "afterwards", "altogether": "in total",
    "what is": "what's", "needs": "requires", "uses": "utilizes", "large": "big", "big": "large", "store": "shop",
    "evaluate": "compute", "total": "overall", "print": "output", "given": "provided", "integer": "whole number",
}
_SYNONYM = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b", re.I)
_SPELLED = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
           "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_MATH = re.compile(r"\$[^$]*\$")
_SMALL_INT = re.compile(r"(?<![\d.,^_{\\])\b\d{1,2}\b(?![\d]|[.,]\d)")
_BIG_INT = re.compile(r"(?<![\d.,])\b\d{4,}\b(?![\d]|[.,]\d)")
_MONEY = re.compile(r"\$(\d+)\b(?![.,]\d)")
_INT = re.compile(r"\d+")


def spelled(n: int) -> str:
    return _SPELLED[n] if n < 20 else _TENS[n // 10 - 2] + ("-" + _SPELLED[n % 10] if n % 10 else "")


def _outside_math(text: str, matches: list[re.Match]) -> list[re.Match]:
    spans = [m.span() for m in _MATH.finditer(text)] if "$" in text else []
    return [m for m in matches if not any(a <= m.start() < b for a, b in spans)]


def _replace(text: str, match: re.Match, new: str) -> str:
    return text[: match.start()] + new + text[match.end():]


def word_swap(text: str, rng: random.Random) -> str | None:
    """A phrase for a synonym; without one, two neighbouring words trade places."""
    found = _outside_math(text, list(_SYNONYM.finditer(text)))
    if found:
        m = rng.choice(found)
        new = SYNONYMS[m.group().lower()]
        return _replace(text, m, new[0].upper() + new[1:] if m.group()[0].isupper() else new)
    tokens = text.split(" ")
    spots = [i for i in range(len(tokens) - 1) if tokens[i].isalpha() and tokens[i + 1].isalpha()]
    if not spots:
        return None
    i = rng.choice(spots)
    tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return " ".join(tokens)


def number_spelled(text: str, rng: random.Random) -> str | None:
    found = _outside_math(text, list(_SMALL_INT.finditer(text)))
    if not found:
        return None
    m = rng.choice(found)
    return _replace(text, m, spelled(int(m.group())))


def number_reformatted(text: str, rng: random.Random) -> str | None:
    """1000 → 1,000, or $12 → $12.00."""
    big = _outside_math(text, list(_BIG_INT.finditer(text)))
    if big:
        m = rng.choice(big)
        return _replace(text, m, f"{int(m.group()):,}")
    money = list(_MONEY.finditer(text))
    if money:
        m = rng.choice(money)
        return _replace(text, m, f"${m.group(1)}.00")
    return None


def punctuation(text: str, rng: random.Random) -> str | None:
    options = []
    if ", " in text:
        options.append(lambda: text.replace(", ", " ", 1))
    if text.rstrip()[-1:] in ".?":
        options.append(lambda: text.rstrip()[:-1])
    if ". " in text:
        options.append(lambda: text.replace(". ", "; ", 1))
    words_ = text.split(" ")
    if len(words_) > 4:
        options.append(lambda: " ".join([*words_[:2], words_[2] + ",", *words_[3:]]))
    return rng.choice(options)() if options else None


def latex_layout(text: str, rng: random.Random) -> str | None:
    if "$" not in text:
        return None
    options = [lambda: _MATH.sub(lambda m: r"\(" + m.group()[1:-1] + r"\)", text, count=1)]
    if r"\frac" in text:
        options.append(lambda: text.replace(r"\frac", r"\dfrac"))
    if "=" in text:
        options.append(lambda: text.replace("=", r"= \, ", 1))
    if "(" in text and ")" in text:
        options.append(lambda: text.replace("(", r"\left(", 1).replace(")", r"\right)", 1))
    if "+" in text:
        options.append(lambda: text.replace("+", " + ").replace("  ", " "))
    return rng.choice(options)()


EDITS: dict[str, Callable[[str, random.Random], str | None]] = {
    "word_swap": word_swap, "number_spelled": number_spelled, "number_reformatted": number_reformatted,
    "punctuation": punctuation, "latex_layout": latex_layout,
}


def edited(text: str, edits: int, rng: random.Random) -> tuple[str, list[str]] | None:
    """`text` after `edits` edits of different kinds, each applicable to it; None when too few apply."""
    kinds = list(EDITS)
    rng.shuffle(kinds)
    applied = []
    for kind in kinds:
        new = EDITS[kind](text, rng)
        if new is not None and new != text:
            text, applied = new, [*applied, kind]
            if len(applied) == edits:
                return text, applied
    return None


def template_twin(text: str, rng: random.Random) -> str | None:
    """The same text with one of its numbers changed: the same template, another problem."""
    found = list(_INT.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    value = int(m.group())
    return _replace(text, m, str(value + rng.randint(1, 9)))


@dataclass(frozen=True)
class Planted:
    text: str
    kind: str  # original, variant, twin
    original: int  # index of its original (itself for originals)
    length: str  # short or long
    edits: tuple[str, ...] = ()


def shared_problems() -> tuple[list[str], list[str]]:
    """(short problems, long problems) from the shared data, each text once."""
    texts: dict[str, None] = {}
    for name in ("gsm8k_train", "math_train", "stdio_problems"):
        path = DATA / "queries" / f"{name}.jsonl"
        for line in jsonl_lines(str(path), path.read_bytes()):
            query = parse_json_line(line["raw"], line["source"])
            if not hasattr(query, "reason"):
                texts["\n".join(query.user_turns())] = None
    short = [t for t in texts if len(t.split()) <= SHORT_WORDS]
    long = [t for t in texts if len(t.split()) >= LONG_WORDS]
    middle = [t for t in texts if SHORT_WORDS < len(t.split()) < LONG_WORDS]
    return short + middle, long


def planted_set(sample: int, seed: int) -> list[Planted]:
    """Every shared problem as an original; for `sample` short and `sample // 5` long ones, a one-edit and a
    two-edit variant; for the short ones, a template twin."""
    short, long = shared_problems()
    rng = random.Random(seed)
    rows = [Planted(t, "original", i, "short" if len(t.split()) <= SHORT_WORDS else "mid") for i, t in enumerate(short)]
    rows += [Planted(t, "original", len(rows) + i, "long") for i, t in enumerate(long)]
    short_picks = rng.sample([i for i, row in enumerate(rows) if row.length == "short"], sample)
    long_picks = rng.sample([i for i, row in enumerate(rows) if row.length == "long"], min(sample // 5, len(long)))
    for i in short_picks + long_picks:
        for edits in (1, 2):
            variant = edited(rows[i].text, edits, rng)
            if variant is not None:
                rows.append(Planted(variant[0], "variant", i, rows[i].length, tuple(variant[1])))
    for i in short_picks:
        twin = template_twin(rows[i].text, rng)
        if twin is not None:
            rows.append(Planted(twin, "twin", i, "short"))
    return rows


def word_signatures(hasher: MinHasher, texts: Sequence[str], shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of word n-grams of the near form, salted with the numbers like `MinHasher.signatures`: the
    word-shingle rows of the table (rensa's batch of token lists)."""
    from rensa import RMinHash

    from pipeline.preprocess.dedup import numbers_salt
    from pipeline.preprocess.normalize import near_form

    forms = [near_form(t) for t in texts]
    present = np.array([i for i, (form, _) in enumerate(forms) if form], dtype=np.int64)
    shingles = []
    for i in present:
        tokens = forms[i][0].split()
        grams = [" ".join(tokens[j:j + shingle_words]) for j in range(max(1, len(tokens) - shingle_words + 1))]
        shingles.append(grams)
    matrix = RMinHash.digest_matrix_from_token_sets(shingles, hasher.num_perm, hasher.seed)
    signatures = np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(present), hasher.num_perm)
    salts = np.array([numbers_salt(forms[i][1]) for i in present], dtype=np.uint32)
    return signatures ^ salts[:, None], present


def old_signatures(hasher: MinHasher, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The job's previous scheme: 5-word shingles of the match key, no number handling."""
    from rensa import RMinHash

    keys = [words(match_key(t)) for t in texts]
    present = np.array([i for i, k in enumerate(keys) if k], dtype=np.int64)
    shingles = [[" ".join(keys[i][j:j + 5]) for j in range(max(1, len(keys[i]) - 4))] for i in present]
    matrix = RMinHash.digest_matrix_from_token_sets(shingles, hasher.num_perm, hasher.seed)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(present), hasher.num_perm), present


def groups(rows: list[Planted], texts: list[str], signatures: np.ndarray, present: np.ndarray,
           hasher: MinHasher, threshold: float) -> np.ndarray:
    """Group id (its representative's index) of every row: exact match keys first, then near duplicates."""
    ranks = [f"{i:09d}" for i in range(len(rows))]
    group = np.arange(len(rows))
    exact = exact_duplicates([match_key(t) for t in texts], ranks)
    for member, rep in exact.items():
        group[member] = rep
    open_rows = np.array([i not in exact for i in present], dtype=bool)  # the job near-dedups what exact kept
    signatures, present = signatures[open_rows], present[open_rows]
    near = near_duplicates_in_memory(signatures, [ranks[i] for i in present], hasher, threshold)
    representative = {int(member): int(rep) for member, (rep, _) in near.items()}
    return np.array([representative.get(int(g), int(g)) for g in group])


def scores(rows: list[Planted], group: np.ndarray) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for length in ("short", "long"):
        for edits in (1, 2):
            chosen = [i for i, r in enumerate(rows) if r.kind == "variant" and r.length == length
                      and len(r.edits) == edits]
            out[f"recall_{length}_{edits}"] = round(np.mean([group[i] == group[rows[i].original] for i in chosen]), 4)
    twins = [i for i, r in enumerate(rows) if r.kind == "twin"]
    out["twins_merged"] = round(np.mean([group[i] == group[rows[i].original] for i in twins]), 4)
    originals = [i for i, r in enumerate(rows) if r.kind == "original"]
    out["originals_dropped"] = int(sum(group[i] != i for i in originals))
    out["originals_dropped_pct"] = round(100 * out["originals_dropped"] / len(originals), 3)
    return out


def throughput(texts: list[str], hasher: MinHasher) -> dict[str, float]:
    """Signatures per second per core from normalized text, three ways, on the same texts."""
    from rensa import RMinHash

    from pipeline.preprocess.normalize import near_form

    def per_doc() -> None:
        for text in texts:
            form = near_form(text)[0]
            k = hasher.shingle_size
            sketch = RMinHash(hasher.num_perm, hasher.seed)
            sketch.update([form[j:j + k] for j in range(max(1, len(form) - k + 1))])
            sketch.digest()

    def timed(step: Callable[[], object]) -> float:
        started = time.process_time()
        step()
        return round(len(texts) / (time.process_time() - started))

    batches = [texts[i:i + 1024] for i in range(0, len(texts), 1024)]
    forms = [near_form(text) for text in texts]
    return {
        "near_form alone": timed(lambda: [near_form(text) for text in texts]),
        "MinHasher.form_signatures alone (from near forms)": timed(
            lambda: [hasher.form_signatures(forms[i:i + 1024]) for i in range(0, len(forms), 1024)]),
        "rensa per document (RMinHash.update, char n-grams)": timed(per_doc),
        "previous job: 5-word shingles, rensa batch of token lists": timed(
            lambda: [old_signatures(hasher, batch) for batch in batches]),
        "MinHasher.signatures (numpy n-gram hashes, rensa flat batch)": timed(
            lambda: [hasher.signatures(batch) for batch in batches]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=1500, help="short problems given variants and a twin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--shingles", nargs="*", default=["old", "w1", "w2", "w3", "c3", "c4", "c5", "c6"],
                        help="old (the previous scheme), wN (N-word), cN (N-character shingles)")
    parser.add_argument("--examples", type=int, default=0, help="print this many missed variants and merges")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--write-test-set", metavar="JSONL",
                        help="write a small planted set (the sampled originals, their variants and twins, and 300 "
                             "other short problems) for the tests, and stop")
    args = parser.parse_args()
    if args.write_test_set:
        write_test_set(Path(args.write_test_set), planted_set(args.sample, args.seed), args.seed)
        return

    rows = planted_set(args.sample, args.seed)
    texts = [normalize(r.text) for r in rows]
    counts = {kind: sum(r.kind == kind for r in rows) for kind in ("original", "variant", "twin")}
    print(json.dumps({"rows": len(rows), **counts}))
    table = []
    for shingling in args.shingles:
        size = 5 if shingling == "old" else int(shingling[1:])
        hasher = MinHasher(128, size, 0.5, 1)
        if shingling == "old":
            signatures, present = old_signatures(hasher, texts)
        elif shingling.startswith("w"):
            signatures, present = word_signatures(hasher, texts, size)
        else:
            signatures, present = hasher.signatures(texts)
        for threshold in args.thresholds:
            hasher = MinHasher(128, size, threshold, 1)
            group = groups(rows, texts, signatures, present, hasher, threshold)
            table.append({"shingles": shingling, "threshold": threshold, **scores(rows, group)})
            print(json.dumps(table[-1]), flush=True)
            if args.examples:
                show_examples(rows, group, args.examples)
    hasher = MinHasher(128, 5, 0.5, 1)
    speed = throughput([texts[i] for i, r in enumerate(rows) if r.kind == "original"], hasher)
    print(json.dumps(speed, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "table": table, "per_s_per_core": speed}, indent=2))


def write_test_set(path: Path, rows: list[Planted], seed: int, others: int = 300) -> None:
    planted = [r for r in rows if r.kind != "original"]
    sampled = sorted({r.original for r in planted})
    rest = [i for i, r in enumerate(rows) if r.kind == "original" and r.length == "short" and i not in sampled]
    keep = sampled + random.Random(seed).sample(rest, others)
    index = {old: new for new, old in enumerate(keep)}
    lines = [{"text": rows[i].text, "kind": "original", "original": index[i], "length": rows[i].length, "edits": []}
             for i in keep]
    lines += [{"text": r.text, "kind": r.kind, "original": index[r.original], "length": r.length,
               "edits": list(r.edits)} for r in planted]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def show_examples(rows: list[Planted], group: np.ndarray, n: int) -> None:
    missed = [r for i, r in enumerate(rows) if r.kind == "variant" and group[i] != group[r.original]]
    for r in missed[:n]:
        print("  MISSED", r.edits, "|", rows[r.original].text[:150].replace("\n", " "), "|",
              r.text[:150].replace("\n", " "))
    originals = [i for i, r in enumerate(rows) if r.kind == "original"]
    by_group: dict[int, list[int]] = {}
    for i in originals:
        by_group.setdefault(int(group[i]), []).append(i)
    for members in [m for m in by_group.values() if len(m) > 1][:n]:
        print("  MERGED", " || ".join(rows[i].text[:120].replace("\n", " ") for i in members))


if __name__ == "__main__":
    main()
