"""The experiment's report: the paper's Table 1 (benchmarks × students and the base model, pass@1 ± s.e.), response
tokens per benchmark and student, and the teachers' datasets compared, as one HTML page and `results.json`.

    write_experiment_report(root, students, storage_options) -> dict   (what results.json holds)

`root` is the experiment's output (`pipeline.experiment`): the distill run at `distill/` (filtered by jobs.filter),
the students at `train/STUDENT/`, the evaluation at `evaluate/`. `students` maps each student to the teachers it was
trained on. Nothing is computed again that a job already measured: accuracy and lengths are jobs.evaluate's
results.json as they are, the datasets' numbers are `pipeline.report`'s (jobs.analyze's) functions over the distill
run, training numbers are jobs.train's summary. The folder `root/report/` gets report.html (figures embedded),
results.json and figures/*.png. Must never import Ray or vLLM.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import replace
from typing import Any

import pyarrow as pa

from pipeline import eval_report
from pipeline.report import (
    Section, TeacherRun, length_section, length_summary, perplexity_section, read_run, summary_section, table,
    teacher_yield, value_summary,
)
from pipeline.report_html import render_html
from pipeline.storage import Store

BASE = "base"  # the base model's name in the evaluation


def write_experiment_report(root: str, students: dict[str, list[str]],
                            storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    def store(*parts: str) -> Store:
        return Store(posixpath.join(root, *parts), storage_options)

    teachers = read_run(store("distill"), label_with_run=False)
    evaluation = json.loads(store("evaluate").read_text("results.json"))
    training = {s: json.loads(store("train", s).read_text("summary.json")) for s in students}
    evaluated = store("evaluate")
    samples = {
        (model, benchmark): evaluated.read_table(f"models/{model}/{benchmark}/samples",
                                                 columns=["completion_tokens", "correct"])
        for model, benchmarks in evaluation["models"].items() for benchmark in benchmarks
    }
    samples = {pair: t for pair, t in samples.items() if t is not None}
    results = experiment_results(evaluation, students, training, teachers)
    # The evaluation's and jobs.analyze's own sections follow the experiment's three, titled for this page.
    sections = [
        table1_section(results),
        tokens_section(results),
        datasets_section(results),
        replace(eval_report.results_section(evaluation["models"]), title="Students: pass@k and cons@k"),
        replace(eval_report.length_section(evaluation["models"], samples), title="Students: response length"),
        replace(summary_section(teachers), title="Datasets: cost and yield per category"),
        replace(length_section(teachers), title="Datasets: response length"),
        replace(perplexity_section(teachers), title="Datasets: perplexity"),
    ]
    output = store("report")
    for section in sections:
        for figure in section.figures:
            output.write_bytes(f"figures/{figure.name}", figure.png)
    results["sections"] = [s.as_json() for s in sections]
    output.write_text("results.json", json.dumps(results, indent=2))
    runs = [{"path": posixpath.join(root, "distill"), "teachers": [t.label for t in teachers]}]
    output.write_text("report.html", render_html("The experiment: distillation sources compared", runs, sections))
    return results


def experiment_results(evaluation: dict[str, Any], students: dict[str, list[str]], training: dict[str, dict],
                       teachers: list[TeacherRun]) -> dict[str, Any]:
    """results.json less its sections: per model and benchmark the evaluation's numbers, per teacher its dataset's."""
    metrics = evaluation["models"]
    benchmarks = eval_report.benchmarks_of(metrics)
    models = [*(s for s in students if s in metrics), *(m for m in metrics if m not in students)]
    return {
        "benchmarks": benchmarks,
        "models": {
            model: {
                "trained_on": students.get(model, []),
                "training": _training(training.get(model)),
                "benchmarks": {b: _scores(metrics[model].get(b)) for b in benchmarks},
            }
            for model in models
        },
        "datasets": {t.label: dataset_numbers(t) for t in teachers},
        "protocol": evaluation.get("protocol"),
    }


def _scores(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    tokens = m["response_tokens"]["all"]
    return {"pass@1": m["pass@1"], "pass@1_stderr": m["pass@1_stderr"], "problems": m["problems"],
            "samples": m["samples"], "mean_response_tokens": tokens["mean"], "median_response_tokens": tokens["median"],
            "truncation_rate": m["truncation_rate"]}


def _training(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    steps = summary.get("steps") or []
    return {"samples": {name: counts["kept"] for name, counts in summary["data"].items()},
            "steps": summary["plan"]["total_steps"], "final_loss": steps[-1]["loss"] if steps else None,
            "model": summary["model"]}


def dataset_numbers(teacher: TeacherRun) -> dict[str, Any]:
    """A teacher's dataset: yield and cost (distill), kept by the filter, perplexity and response lengths."""
    tb = teacher.tables
    y = teacher_yield(teacher.queries.num_rows, tb.accepted, tb.rejects, tb.attempts)
    filtered = [t for t in (tb.filtered, tb.filter_rejects) if t is not None]
    ppl = pa.chunked_array([c for t in filtered for c in t.column("ppl").chunks], pa.float64())
    # Lengths in the student's tokens where the filter measured them (every accepted sample, one tokenizer for all
    # teachers); else the teacher's generated tokens, which a source that generates nothing (`reference`) has none of.
    lengths = length_summary(
        pa.chunked_array([c for t in filtered for c in t.column("response_tokens").chunks], pa.int64()) if filtered
        else tb.accepted.column("completion_tokens")
    )
    return {
        "queries": y.queries, "accepted": y.accepted, "acceptance_pct": round(100 * y.acceptance_rate, 1),
        "mean_attempts": round(y.mean_attempts, 2), "generated_tokens": y.generated_tokens,
        "generated_tokens_per_accepted": None if y.tokens_per_accepted is None else round(y.tokens_per_accepted),
        "filter_kept": None if tb.filtered is None else tb.filtered.num_rows,
        "perplexity": value_summary(ppl) if filtered else None,
        "response_tokens": lengths,
    }


def _cell(scores: dict[str, Any] | None) -> str | None:
    if scores is None or scores["pass@1"] is None:
        return None
    return f"{scores['pass@1']:.1f} ± {scores['pass@1_stderr']:.1f}"


def _label(numbers: dict[str, Any]) -> str:
    return ", ".join(numbers["trained_on"]) if numbers["trained_on"] else "— (base model)"


def table1_section(results: dict[str, Any]) -> Section:
    benchmarks = results["benchmarks"]
    rows = [[model, _label(numbers), *(_cell(numbers["benchmarks"][b]) for b in benchmarks)]
            for model, numbers in results["models"].items()]
    intro = ("The paper's Table 1: each student was fine-tuned from the same base model on one teacher's filtered "
             "samples (or, as `mix`, on all of them) and evaluated with the same protocol as the base model. pass@1 "
             "in percent ± its standard error over problems; pass@k, cons@k and the figure follow below.")
    return Section("table1", "Students compared", intro,
                   [table("table1", "pass@1 (%) ± s.e. per benchmark", ["model", "trained on", *benchmarks], rows)], [])


def tokens_section(results: dict[str, Any]) -> Section:
    benchmarks = results["benchmarks"]
    rows = [[model, *(None if s is None else s["mean_response_tokens"]
                      for s in (numbers["benchmarks"][b] for b in benchmarks))]
            for model, numbers in results["models"].items()]
    intro = ("Mean response tokens per benchmark: the paper's adaptive length (a student of a good teacher answers "
             "harder problems at more length). Distributions, split by correctness, follow below.")
    return Section("tokens", "Response tokens per benchmark",
                   intro, [table("tokens", "Mean response tokens", ["model", *benchmarks], rows)], [])


def datasets_section(results: dict[str, Any]) -> Section:
    columns = ["teacher", "queries", "accepted", "acceptance %", "mean attempts", "generated tokens per accepted",
               "kept by the filter", "mean perplexity", "median response tokens", "% under 1,024", "% over 10,240"]
    rows = [[label, d["queries"], d["accepted"], d["acceptance_pct"], d["mean_attempts"],
             d["generated_tokens_per_accepted"], d["filter_kept"], (d["perplexity"] or {}).get("mean"),
             d["response_tokens"]["p50"], d["response_tokens"]["under_1024_pct"],
             d["response_tokens"]["over_10240_pct"]]
            for label, d in results["datasets"].items()]
    intro = ("Each teacher's dataset over the same queries: acceptance and cost (generated tokens, rejected "
             "candidates included, per accepted sample), what the quality filter kept, perplexity under the reference "
             "model and the length distribution. Per category, below.")
    return Section("datasets", "Datasets compared", intro,
                   [table("datasets", "Per teacher", columns, rows)], [])


def table1_markdown(results: dict[str, Any]) -> str:
    """Table 1 and the mean response tokens as one Markdown table, for the terminal and a README."""
    benchmarks = results["benchmarks"]
    lines = ["| model | trained on | " + " | ".join(f"{b} pass@1 | {b} tokens" for b in benchmarks) + " |",
             "|---|---|" + "---:|---:|" * len(benchmarks)]
    for model, numbers in results["models"].items():
        cells = []
        for b in benchmarks:
            scores = numbers["benchmarks"][b]
            cells += [_cell(scores) or "—", "—" if scores is None else f"{scores['mean_response_tokens']:,.0f}"]
        lines.append(f"| {model} | {_label(numbers)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
