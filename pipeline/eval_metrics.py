"""Benchmark metrics of `jobs.evaluate`, as pure functions of the scored samples (EVAL_SAMPLE_SCHEMA rows).

- `pass_at_k(n, c, k)`: the unbiased pass@k of one problem with `c` correct among `n` samples (Chen et al. 2021).
- `vote_key(query, response, response_format)`: what a sample votes for in cons@k (majority voting): for math, the
  last `\\boxed{}` of the response's answer part, normalized so that trivially different spellings (`\\boxed{ 42 }`,
  `\\boxed{42}`, `\\boxed{\\text{42}}`, `\\dfrac`/`\\frac`) vote together; for multiple choice, the committed label
  (`pipeline.verifiers.choice.extract_choice`); None for everything else (code has no answer to vote on) and for a
  response that commits to nothing.
- `benchmark_metrics(samples, ks)`: the numbers of one model on one benchmark, as a JSON-ready dict (see its
  docstring). Rates are in percent (0-100, two decimals), as the paper's tables print them.
- `models_table(results)`: a compact fixed-width text table of `{model: {benchmark: benchmark_metrics(...)}}` for
  the job to print.

Must never import Ray or vLLM.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.loaders import last_boxed
from pipeline.report import length_summary
from pipeline.response_format import ResponseFormat, parse_response
from pipeline.schema import Query
from pipeline.verifiers.choice import extract_choice
from pipeline.verifiers.routes import Available, Route, route

RATE_DIGITS = 2  # percent with two decimals: finer than any benchmark's standard error
METRIC_COLUMNS = ["problem_id", "sample", "answer", "correct", "failure", "completion_tokens", "finish_reason"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of `k` samples drawn without replacement from `n`, of which `c` are
    correct, is correct: 1 - C(n-c, k) / C(n, k), computed as a product so that n = 64, k = 32 does not overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# ---- what a sample votes for -------------------------------------------------------------------------------------

_SPACING = re.compile(r"\\[,;:! ]|~")  # LaTeX spacing commands
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])|\\displaystyle(?![A-Za-z])")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|boxed)\s*\{")
# Whitespace matters only between two letters ("\pi r" is not "\pir"); elsewhere it is layout ("x + 1", "{ 42 }").
_LAYOUT_SPACE = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z])")


def _encloses(text: str, start: int) -> bool:
    """Whether the brace at `start` is closed by the text's last character."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i == len(text) - 1
    return False


def normalize_boxed(expression: str) -> str:
    """The vote key of a boxed math answer: layout whitespace, spacing and sizing commands, `$…$`, whole-answer
    `\\text{}`-like wrappers, outer braces and a trailing period taken off; `\\dfrac` and `\\tfrac` read as `\\frac`.
    Mathematically equal but differently written answers (`0.5`, `\\frac{1}{2}`) still vote apart: the key groups
    spellings, it does not decide equality (that is the verifier's job)."""
    key = _SPACING.sub(" ", expression)
    key = _SIZING.sub("", key)
    key = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", key)
    key = re.sub(r"\s+", " ", key).strip()
    while True:
        before = key
        key = key.strip().rstrip(".").strip()
        if len(key) > 1 and key[0] == key[-1] == "$":
            key = key.strip("$")
        wrapper = _TEXT_WRAPPER.match(key)
        if wrapper is not None and _encloses(key, wrapper.end() - 1):
            key = key[wrapper.end() : -1]
        elif key.startswith("{") and _encloses(key, 0):
            key = key[1:-1]
        if key == before:
            break
    return _LAYOUT_SPACE.sub("", key)


def vote_key(query: Query, response: str, response_format: ResponseFormat) -> str | None:
    """The answer this response votes for in cons@k, or None when it votes for nothing (see the module docstring).
    Only the answer part counts (`parse_response` in the run's format): a box in the reasoning is a step, not an
    answer, and a response cut off before its answer votes for nothing."""
    # The route table decides which queries are math and which multiple choice; the verifiers available do not
    # change those two routes, so none are claimed.
    kind = route(query, Available(judge=False, code=False)).route
    if kind not in (Route.math, Route.choice):
        return None
    answer = parse_response(response, response_format).answer
    if not answer:
        return None
    if kind is Route.choice:
        return extract_choice(answer)
    boxed = last_boxed(answer)
    if boxed is None:
        return None
    return normalize_boxed(boxed) or None


# ---- one model on one benchmark ----------------------------------------------------------------------------------


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """cons@k of one problem given its first k samples in order: the most frequent non-null answer wins (a tie goes
    to the answer seen first), and the problem counts as solved when the first sample carrying it is correct. A
    problem without any answer counts as unsolved."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)
    return bool(correct[answers.index(winner)])


def _rate(value: float) -> float:
    return round(100.0 * value, RATE_DIGITS)


def token_summary(lengths: Sequence[int]) -> dict[str, Any]:
    """Response lengths in tokens: n, mean, median, percentiles (`pipeline.report.length_summary`, so evaluation and
    analysis read alike), max, and the shares under 1,024 and over 10,240 tokens; None values for no samples."""
    summary = length_summary(pa.array(lengths, pa.int64()))
    summary["median"] = summary.pop("p50")
    summary["mean"] = round(float(np.mean(lengths)), 1) if lengths else None
    summary["max"] = int(max(lengths)) if lengths else None
    order = ["n", "mean", "median", "p10", "p25", "p75", "p90", "p99", "max", "under_1024_pct", "over_10240_pct"]
    return {key: summary[key] for key in order}


def _problems(samples: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Each problem's samples in `sample` order; refuses a table that is not one model on one benchmark, lacks a
    column, or holds a sample twice (a resumed run that regenerated), since any of those would bias the numbers."""
    missing = [c for c in METRIC_COLUMNS if c not in samples.column_names]
    if missing:
        raise ValueError(f"samples table lacks column(s) {', '.join(missing)} (see EVAL_SAMPLE_SCHEMA)")
    for column in ("model", "benchmark"):
        if column in samples.column_names and len(set(samples.column(column).to_pylist())) > 1:
            raise ValueError(f"samples of several {column}s ({sorted(set(samples.column(column).to_pylist()))}); "
                             "benchmark_metrics scores one model on one benchmark")
    problems: dict[str, list[dict[str, Any]]] = {}
    for row in samples.select(METRIC_COLUMNS).to_pylist():
        if row["correct"] is None:
            raise ValueError(f"problem {row['problem_id']} sample {row['sample']}: `correct` is null")
        problems.setdefault(row["problem_id"], []).append(row)
    for problem_id, rows in problems.items():
        rows.sort(key=lambda r: r["sample"])
        indices = [r["sample"] for r in rows]
        if len(set(indices)) < len(indices):
            raise ValueError(f"problem {problem_id} holds sample {Counter(indices).most_common(1)[0][0]} twice")
    return problems


def benchmark_metrics(samples: pa.Table, ks: Sequence[int]) -> dict[str, Any]:
    """The metrics of one model on one benchmark from its scored samples (EVAL_SAMPLE_SCHEMA columns, at least
    METRIC_COLUMNS), as a JSON-ready dict; rates in percent:

    - `problems`, `samples`, `min_samples_per_problem`, `max_samples_per_problem`;
    - `pass@1`: the mean over problems of each problem's share of correct samples; `pass@1_stderr`: the sample
      standard deviation (ddof 1) of those shares over sqrt(problems), 0 for a single problem;
    - `pass@k` (unbiased) and `cons@k` (majority vote over each problem's first k samples by `sample` index) for each
      k in `ks` that every problem has samples for; a larger k is listed in `not_reported` with the reason instead;
    - `truncation_rate`: samples that hit max tokens (`finish_reason` "length");
    - `response_tokens`: `token_summary` of `completion_tokens` for `all`, `correct` and `incorrect` samples;
    - `failures`: samples per failure reason, most frequent first.
    """
    problems = _problems(samples)
    counts = [len(rows) for rows in problems.values()]
    fewest = min(counts, default=0)
    metrics: dict[str, Any] = {
        "problems": len(problems), "samples": sum(counts),
        "min_samples_per_problem": fewest, "max_samples_per_problem": max(counts, default=0),
    }
    shares = [sum(r["correct"] for r in rows) / len(rows) for rows in problems.values()]
    metrics["pass@1"] = _rate(float(np.mean(shares))) if shares else None
    metrics["pass@1_stderr"] = (
        _rate(float(np.std(shares, ddof=1)) / math.sqrt(len(shares))) if len(shares) > 1 else 0.0 if shares else None
    )
    not_reported = {}
    for k in sorted(set(ks)):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not problems or k > fewest:
            reason = f"needs {k} samples per problem; the fewest a problem has is {fewest}"
            not_reported.update({f"pass@{k}": reason, f"cons@{k}": reason})
            continue
        if k > 1:
            metrics[f"pass@{k}"] = _rate(float(np.mean(
                [pass_at_k(len(rows), sum(r["correct"] for r in rows), k) for rows in problems.values()]
            )))
        metrics[f"cons@{k}"] = _rate(float(np.mean(
            [majority_correct([r["answer"] for r in rows[:k]], [r["correct"] for r in rows[:k]])
             for rows in problems.values()]
        )))
    metrics["not_reported"] = not_reported
    rows = [r for rows in problems.values() for r in rows]
    truncated = sum(r["finish_reason"] == "length" for r in rows)
    metrics["truncation_rate"] = _rate(truncated / len(rows)) if rows else None
    metrics["response_tokens"] = {
        subset: token_summary([r["completion_tokens"] for r in rows if keep(r)])
        for subset, keep in (("all", lambda r: True), ("correct", lambda r: r["correct"]),
                             ("incorrect", lambda r: not r["correct"]))
    }
    metrics["failures"] = dict(Counter(r["failure"] for r in rows if r["failure"] is not None).most_common())
    return metrics


# ---- for the console ---------------------------------------------------------------------------------------------


def _largest_cons(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The cons@k with the largest k reported (the paper's cons@64 on AIME), or None."""
    reported = [(int(key.partition("@")[2]), key) for key in metrics if key.startswith("cons@")]
    if not reported:
        return None
    key = max(reported)[1]
    return key, metrics[key]


def models_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """`{model: {benchmark: benchmark_metrics(...)}}` as a fixed-width table, one line per model and benchmark:
    problems, samples per problem, pass@1 ± standard error, the largest cons@k, mean response tokens and the
    truncation rate."""
    header = ["model", "benchmark", "problems", "n", "pass@1 ± se", "cons@k", "mean tokens", "truncated %"]
    lines = []
    for model, benchmarks in results.items():
        for benchmark, m in benchmarks.items():
            cons = _largest_cons(m)
            n = m["min_samples_per_problem"]
            lines.append([
                model, benchmark, str(m["problems"]),
                str(n) if n == m["max_samples_per_problem"] else f"{n}-{m['max_samples_per_problem']}",
                "—" if m["pass@1"] is None else f"{m['pass@1']:.2f} ± {m['pass@1_stderr']:.2f}",
                "—" if cons is None else f"{cons[0]} {cons[1]:.2f}",
                "—" if m["response_tokens"]["all"]["mean"] is None else f"{m['response_tokens']['all']['mean']:,.1f}",
                "—" if m["truncation_rate"] is None else f"{m['truncation_rate']:.2f}",
            ])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # Names read left-aligned, numbers right-aligned.
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in lines)])
