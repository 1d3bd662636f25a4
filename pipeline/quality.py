"""Post-generation quality filters for accepted samples: token n-gram repetition, length, structure and perplexity
thresholds, and the decision that combines them.

Scoring (`jobs.filter` phase 1) measures each sample once, into a `filter_scores` row (`SCORE_SCHEMA`); deciding
(phase 2) turns the scores of a whole teacher into a keep, or a drop with a stable reason code and a human-readable
detail naming the value and the threshold. Checks run in a fixed order and the first failing one names the reason:
`structure`, `too_long`, `ngram_repetition`, `corpus_boilerplate`, `perplexity`. A percentile threshold is resolved
over every perplexity the teacher's samples got, so it drops that share of the teacher's distribution.
This module must never import Ray or vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import FilterConfig
from pipeline.packing import tokenize_conversation
from pipeline.response_format import format_response, parse_response
from pipeline.schema import SAMPLE_SCHEMA

REASONS = ("structure", "too_long", "ngram_repetition", "corpus_boilerplate", "perplexity")

# One row per scored sample in `teachers/NAME/filter_scores/`.
SCORE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("structure", pa.string()),  # the structure check's reason code, null when well-formed
        ("response_tokens", pa.int64()),  # the canonical response in the student's tokens
        ("sequence_tokens", pa.int64()),  # prompt + response in the student's chat template, as training sees it
        ("max_ngram_count", pa.int64()),  # occurrences of the response's most frequent token n-gram (0: too short)
        ("ppl", pa.float64()),  # null when perplexity is off or the sample could not be scored
        ("reference_tokens", pa.int64()),  # prompt + response in the reference model's tokens; null when off
        ("scoring_hash", pa.string()),
    ]
)

# The agreed output columns (shared with jobs.analyze): every sample column, then the scores training may use.
FILTERED_SCHEMA = pa.schema(
    list(SAMPLE_SCHEMA) + [("ppl", pa.float64()), ("response_tokens", pa.int64()), ("max_ngram_count", pa.int64())]
)
FILTER_REJECT_SCHEMA = pa.schema(
    list(FILTERED_SCHEMA) + [("filter_reason", pa.string()), ("filter_detail", pa.string())]
)

# An odd 64-bit multiplier for the rolling hash of n-grams; arithmetic wraps modulo 2**64.
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)


def ngram_hashes(tokens: Sequence[int], n: int) -> np.ndarray:
    """A 64-bit hash of every window of `n` tokens, in order (empty when there are fewer than `n` tokens). The same
    n-gram hashes alike in every response and process, so hashes can be counted across a corpus."""
    ids = np.asarray(tokens, dtype=np.uint64) + np.uint64(1)  # token 0 must still change the hash
    if len(ids) < n:
        return np.empty(0, dtype=np.uint64)
    windows = len(ids) - n + 1
    hashes = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * _HASH_BASE + ids[offset:offset + windows]
    return hashes


def max_ngram_count(tokens: Sequence[int], n: int) -> int:
    """How often the most frequent n-gram of `tokens` occurs in them; 0 when there are fewer than `n` tokens."""
    hashes = ngram_hashes(tokens, n)
    return int(np.unique(hashes, return_counts=True)[1].max()) if len(hashes) else 0


def distinct_ngram_hashes(tokens: Sequence[int], n: int) -> np.ndarray:
    """Each n-gram of a response once: what a corpus count adds up (a response counts once per n-gram)."""
    return np.unique(ngram_hashes(tokens, n))


def prompt_and_response(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """A sample's prompt (its messages before the final assistant turn) and its response: the canonical assistant
    turn `format_response(think, answer)`, which is what training sees."""
    messages = [{"role": m["role"], "content": m["content"]} for m in sample["messages"]]
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return messages, format_response(sample["think"], sample["answer"])


def structure_failure(sample: dict[str, Any]) -> str | None:
    """The structure check on the canonical turn, and whether that turn is the one the messages end with."""
    messages = sample["messages"]
    if not len(messages) or messages[-1]["role"] != "assistant":
        return "no_assistant_turn"
    response = format_response(sample["think"], sample["answer"])
    parsed = parse_response(response, "think_answer")
    if not parsed.ok:
        return parsed.failure
    if messages[-1]["content"] != response:
        return "last_turn_not_canonical"
    return None


def measure(sample: dict[str, Any], tokenizer: Any, n: int) -> dict[str, Any]:
    """A sample's student-side scores: structure, lengths and n-gram repetition. The training sequence is tokenized
    exactly as `jobs.train` does (`pipeline.packing.tokenize_conversation`)."""
    prompt, response = prompt_and_response(sample)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    sequence, _ = tokenize_conversation(tokenizer, [*prompt, {"role": "assistant", "content": response}])
    return {
        "id": sample["id"],
        "structure": structure_failure(sample),
        "response_tokens": len(response_ids),
        "sequence_tokens": len(sequence),
        "max_ngram_count": max_ngram_count(response_ids, n),
    }


@dataclass(frozen=True)
class Thresholds:
    """The limits actually applied to one teacher, the percentile already resolved to a perplexity."""

    max_tokens: int
    n: int
    max_repeats: int
    corpus_max_responses: int | None
    max_ppl: float | None
    max_ppl_percentile: float | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def resolve_thresholds(config: FilterConfig, ppls: pa.Array | pa.ChunkedArray) -> Thresholds:
    """`config`'s limits for a teacher whose samples scored `ppls` (a column: null where not scored); a percentile
    becomes the perplexity at that percentile of the finite scored values (numpy's linear interpolation), None when
    nothing was scored."""
    perplexity = config.perplexity
    max_ppl = perplexity.max_ppl if perplexity else None
    percentile = perplexity.max_ppl_percentile if perplexity else None
    if percentile is not None:
        values = _values(ppls)
        max_ppl = float(np.percentile(values, percentile)) if len(values) else None
    return Thresholds(config.max_tokens, config.ngram.n, config.ngram.max_repeats, config.ngram.corpus_max_responses,
                      max_ppl, percentile)


def decide(score: dict[str, Any], thresholds: Thresholds, boilerplate: int = 0) -> tuple[str, str] | None:
    """None to keep the sample, else (reason, detail). `score` is a SCORE_SCHEMA row; `boilerplate` is how many of
    the corpus's boilerplate n-grams its response holds."""
    if score["structure"] is not None:
        return "structure", f"the canonical response does not parse: {score['structure']}"
    if score["sequence_tokens"] > thresholds.max_tokens:
        return "too_long", f"{score['sequence_tokens']} tokens > max_tokens {thresholds.max_tokens}"
    if score["max_ngram_count"] > thresholds.max_repeats:
        return ("ngram_repetition", f"a {thresholds.n}-token n-gram occurs {score['max_ngram_count']} times > "
                                    f"max_repeats {thresholds.max_repeats}")
    if boilerplate:
        return ("corpus_boilerplate", f"holds {boilerplate} {thresholds.n}-token n-grams found in more than "
                                      f"{thresholds.corpus_max_responses} responses")
    if score["ppl"] is None:
        if score["reference_tokens"] is None:  # perplexity is off
            return None
        return "perplexity", f"not scored: {score['reference_tokens']} tokens exceed the reference model's " \
                             "max_model_len"
    if thresholds.max_ppl is not None and score["ppl"] > thresholds.max_ppl:
        how = f" (percentile {thresholds.max_ppl_percentile:g})" if thresholds.max_ppl_percentile is not None else ""
        return "perplexity", f"ppl {score['ppl']:.4g} > max_ppl {thresholds.max_ppl:.4g}{how}"
    return None


def summarize(reasons: pa.Array | pa.ChunkedArray, kept_ppl: pa.Array | pa.ChunkedArray,
              kept_response_tokens: pa.Array | pa.ChunkedArray, thresholds: Thresholds) -> dict[str, Any]:
    """Counts by outcome, the thresholds applied, and the perplexity and length distributions of the kept samples,
    from columns: each rejected sample's reason, each kept sample's perplexity and response tokens."""
    rejected: dict[str, int] = {reason: 0 for reason in REASONS}
    for count in pc.value_counts(reasons).to_pylist():  # a row per distinct reason
        rejected[count["values"]] += count["counts"]
    kept = len(kept_response_tokens)
    return {
        "samples": len(reasons) + kept,
        "kept": kept,
        "rejected": rejected,
        "thresholds": thresholds.as_dict(),
        "kept_ppl": _distribution(_values(kept_ppl)),
        "kept_response_tokens": _distribution(_values(kept_response_tokens)),
    }


def _values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column's finite values as floats."""
    values = pc.drop_null(column).to_numpy(zero_copy_only=False).astype(np.float64)
    return values[np.isfinite(values)]


def _distribution(values: np.ndarray) -> dict[str, float] | None:
    if not len(values):
        return None
    return {"mean": round(float(np.mean(values)), 4), "median": round(float(np.median(values)), 4),
            "min": round(float(np.min(values)), 4), "max": round(float(np.max(values)), 4)}
