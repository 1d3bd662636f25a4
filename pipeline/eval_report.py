"""The evaluation report of `jobs.evaluate`: tables and figures of every model on every benchmark, as one HTML page.

    write_report(results, samples, output, protocol=None, storage_options=None) -> str   (the page's path or URL)

`results` is `{model: {benchmark: pipeline.eval_metrics.benchmark_metrics(...)}}` (what results.json holds per model
and benchmark); `samples` is `{(model, benchmark): pa.Table}` with at least the `completion_tokens` and `correct`
columns of EVAL_SAMPLE_SCHEMA (a pair without samples is drawn empty); `output` is the report folder, a
`pipeline.storage.Store` or a local or s3:// path; `protocol` (optional) is results.json's protocol, shown as a table
so every number can be traced to how it was made. The folder gets `report.html` (self-contained: figures embedded as
in `jobs.analyze`, rendered by `pipeline.report_html`) and the same figures as `accuracy.png` and
`response_length.png` next to it. Every number on the page is a value of `results` as it is (rates in percent), so
the page and results.json agree by construction.

The figures, also usable alone, return PNG bytes:
- `accuracy_figure(results)`: pass@1 per benchmark, one bar per model, with standard-error bars;
- `length_figure(samples, order)`: per model, the response-length distribution of each benchmark on a log axis,
  correct and incorrect samples side by side: the paper's adaptive-length figure (harder benchmarks, longer answers).
Must never import Ray or vLLM.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.plots import new_figure, png_bytes
from pipeline.report import Figure, Section, table
from pipeline.report_html import render_html
from pipeline.storage import Store

Results = dict[str, dict[str, dict[str, Any]]]  # model -> benchmark -> benchmark_metrics
TOKEN_COLUMNS = ["n", "mean", "median", "p10", "p25", "p75", "p90", "max"]
_CORRECT, _INCORRECT = "tab:green", "tab:red"


def benchmarks_of(results: Results) -> list[str]:
    """Every benchmark of any model, easiest first by the first model's pass@1 (where it has one), so that length
    figures rise from left to right when length follows difficulty."""
    names = list(dict.fromkeys(b for benchmarks in results.values() for b in benchmarks))
    first = next(iter(results.values()), {})

    def difficulty(name: str) -> float:
        score = first.get(name, {}).get("pass@1")
        return -score if score is not None else 0.0

    return sorted(names, key=difficulty)


# ---- figures -----------------------------------------------------------------------------------------------------


def accuracy_figure(results: Results) -> bytes:
    benchmarks = benchmarks_of(results)
    models = list(results)
    figure, axes = new_figure(1, 1, max(6.0, 1.3 * len(benchmarks) * max(len(models), 1) ** 0.5 + 2), 4.0)
    ax = axes[0][0]
    width = 0.8 / max(len(models), 1)
    positions = np.arange(len(benchmarks))
    for index, model in enumerate(models):
        metrics = [results[model].get(b) or {} for b in benchmarks]
        heights = [m.get("pass@1") or 0.0 for m in metrics]
        errors = [m.get("pass@1_stderr") or 0.0 for m in metrics]
        bars = ax.bar(positions + (index - (len(models) - 1) / 2) * width, heights, width, yerr=errors, capsize=3,
                      label=model)
        ax.bar_label(bars, labels=[f"{h:.1f}" if m.get("pass@1") is not None else "" for h, m in zip(heights, metrics)],
                     fontsize=7, padding=2)
    ax.set_xticks(positions, benchmarks)
    ax.set_ylabel("pass@1 (%) ± standard error")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize=8)
    else:
        ax.set_title("no results yet")
    return png_bytes(figure)


def length_figure(samples: dict[tuple[str, str], pa.Table], order: list[str] | None = None) -> bytes:
    """One panel per model; for each benchmark (in `order`, else by name) a box of the response lengths of its correct
    samples (green) and one of its incorrect samples (red), on a log axis, with the count under each box."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    models = list(dict.fromkeys(model for model, _ in samples))
    benchmarks = order or sorted({benchmark for _, benchmark in samples})
    figure, axes = new_figure(1, max(len(models), 1), max(5.0, 1.4 * len(benchmarks) + 1.5) * max(len(models), 1), 4.2)
    for ax, model in zip(axes[0], models):
        for position, benchmark in enumerate(benchmarks):
            t = samples.get((model, benchmark))
            if t is None or not len(t):
                continue
            lengths = np.maximum(np.asarray(t.column("completion_tokens").to_pylist(), dtype=float), 1)
            correct = np.asarray(t.column("correct").to_pylist(), dtype=bool)
            for offset, chosen, colour in ((-0.18, lengths[correct], _CORRECT), (0.18, lengths[~correct], _INCORRECT)):
                if len(chosen):
                    ax.boxplot([chosen], positions=[position + offset], widths=0.3, patch_artist=True,
                               boxprops={"facecolor": colour, "alpha": 0.45}, medianprops={"color": "black"},
                               flierprops={"marker": ".", "markersize": 3, "markeredgecolor": colour})
                    # A box of equal lengths (one sample, or all at max tokens) collapses to a line: the median's
                    # marker keeps its colour visible.
                    ax.plot([position + offset], [np.median(chosen)], marker="D", markersize=4, color=colour)
                    ax.annotate(f"{len(chosen)}", (position + offset, 0), xycoords=("data", "axes fraction"),
                                xytext=(0, 3), textcoords="offset points", ha="center", fontsize=6)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
        ax.set_xticks(range(len(benchmarks)), benchmarks)
        ax.set_xlim(-0.6, len(benchmarks) - 0.4)
        ax.set_title(model)
        ax.set_ylabel("response tokens")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(handles=[Patch(facecolor=_CORRECT, alpha=0.45, label="correct"),
                           Patch(facecolor=_INCORRECT, alpha=0.45, label="incorrect")], fontsize=8)
    if not models:
        axes[0][0].set_title("no samples yet")
    return png_bytes(figure)


# ---- the page ----------------------------------------------------------------------------------------------------


def _ks(results: Results, prefix: str) -> list[str]:
    keys = {key for benchmarks in results.values() for m in benchmarks.values() for key in m if key.startswith(prefix)}
    return sorted(keys - {"pass@1_stderr"}, key=lambda key: int(key.partition("@")[2]))


def results_section(results: Results) -> Section:
    pass_keys, cons_keys = _ks(results, "pass@"), _ks(results, "cons@")
    columns = ["model", "benchmark", "problems", "samples per problem", *pass_keys[:1], "pass@1 s.e.",
               *pass_keys[1:], *cons_keys, "truncated %", "mean tokens"]
    rows, skipped = [], []
    for model, benchmarks in results.items():
        for benchmark, m in benchmarks.items():
            low, high = m["min_samples_per_problem"], m["max_samples_per_problem"]
            rows.append([model, benchmark, m["problems"], low if low == high else f"{low}-{high}", m["pass@1"],
                         m["pass@1_stderr"], *(m.get(k) for k in pass_keys[1:]), *(m.get(k) for k in cons_keys),
                         m["truncation_rate"], m["response_tokens"]["all"]["mean"]])
            skipped += [[model, benchmark, key, reason] for key, reason in m["not_reported"].items()]
    tables = [table("results", "pass@1, pass@k and cons@k (%) per model and benchmark", columns, rows)]
    if skipped:
        tables.append(table("not_reported", "Metrics not reported, and why", ["model", "benchmark", "metric", "reason"],
                            skipped))
    intro = ("pass@1 is the mean over problems of each problem's share of correct samples, with its standard error "
             "over problems; pass@k is the unbiased estimator of Chen et al. (2021); cons@k is majority voting over a "
             "problem's first k samples. Rates in percent; an em dash where a benchmark has too few samples per "
             "problem for that k.")
    figure = Figure("accuracy.png", "pass@1 per benchmark and model, with standard-error bars; benchmarks easiest "
                    "first.", accuracy_figure(results))
    return Section("results", "Accuracy", intro, tables, [figure])


def length_section(results: Results, samples: dict[tuple[str, str], pa.Table]) -> Section:
    rows = [
        [model, benchmark, subset, *(m["response_tokens"][subset][c] for c in TOKEN_COLUMNS)]
        for model, benchmarks in results.items() for benchmark, m in benchmarks.items()
        for subset in ("all", "correct", "incorrect")
    ]
    intro = ("Response length in completion tokens, for all samples and split by correctness. A reasoning model "
             "adapts its length to difficulty: longer responses on harder benchmarks, and longer incorrect than "
             "correct responses on the same benchmark.")
    figure = Figure("response_length.png", "Response tokens per benchmark (log scale), correct (green) and incorrect "
                    "(red) samples; the number under a box counts its samples.",
                    length_figure(samples, benchmarks_of(results)))
    return Section("length", "Response length", intro,
                   [table("response_tokens", "Response tokens", ["model", "benchmark", "samples", *TOKEN_COLUMNS],
                          rows)], [figure])


def failures_section(results: Results) -> Section:
    rows = [[model, benchmark, reason, count] for model, benchmarks in results.items()
            for benchmark, m in benchmarks.items() for reason, count in m["failures"].items()]
    intro = ("Why samples were scored wrong, as the verifiers' reason codes: `wrong_answer` is a committed but wrong "
             "answer; format and request failures point at the prompt, the response format or max tokens.")
    return Section("failures", "Failures", intro,
                   [table("failures", "Samples per failure reason", ["model", "benchmark", "reason", "samples"],
                          rows)], [])


def _flat(value: Any, prefix: str = "") -> list[list[Any]]:
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _flat(item, f"{prefix}{key}.")]
    if isinstance(value, list):
        value = json.dumps(value)
    return [[prefix.rstrip("."), value]]


def protocol_section(protocol: dict[str, Any]) -> Section:
    intro = "How the numbers were made, as results.json records it: model, engine, sampling and prompts."
    protocol_table = table("protocol", "Protocol", ["setting", "value"], _flat(protocol))
    return Section("protocol", "Protocol", intro, [protocol_table], [])


def write_report(
    results: Results, samples: dict[tuple[str, str], pa.Table], output: Store | str,
    protocol: dict[str, Any] | None = None, storage_options: dict[str, Any] | None = None,
) -> str:
    """Write report.html, accuracy.png and response_length.png to `output` (see the module docstring); returns the
    page's path or URL (`s3://…` for a store on S3)."""
    store = output if isinstance(output, Store) else Store(output, storage_options)
    sections = [results_section(results), length_section(results, samples), failures_section(results)]
    if protocol:
        sections.append(protocol_section(protocol))
    for section in sections:
        for figure in section.figures:
            store.write_bytes(figure.name, figure.png)
    store.write_text("report.html", render_html("Evaluation", [], sections))
    return posixpath.join(store.url.rstrip("/"), "report.html")
