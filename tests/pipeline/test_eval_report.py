"""The evaluation report: one self-contained page whose numbers are the results' numbers, with the accuracy and
adaptive-length figures embedded and written next to it."""


import pyarrow as pa
import pytest

from pipeline.eval_metrics import benchmark_metrics
from pipeline.eval_report import TOKEN_COLUMNS, benchmarks_of, length_figure, write_report
from pipeline.schema import EVAL_SAMPLE_SCHEMA
from pipeline.storage import Store
from tests.conftest import assert_chromium_renders
from tests.jobs.test_analyze import Tables, shown_as

# model -> benchmark -> (correct per problem as a string of samples, completion tokens of every sample); an easy
# benchmark is answered short, a hard one long, and wrong answers run longer: the shape of the paper's figure.
OUTCOMES = {
    "student": {
        "gsm8k": (["11", "10", "11"], [150, 180, 220, 400, 160, 170]),
        "aime24": (["0000", "1000", "0100"], [9000, 12000, 15000, 16000, 5000, 20000, 21000, 32768, 30000, 8000,
                                              32768, 25000]),
    },
    "base": {
        "gsm8k": (["10", "00", "01"], [200, 600, 700, 800, 900, 300]),
        "aime24": (["0000", "0000", "0001"], [32768] * 11 + [4000]),
    },
}
PROTOCOL = {"sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768, "seed": 0},
            "vllm_version": "0.10.0", "models": {"student": {"sha256": "ab12"}}, "stop": ["</answer>"]}


def samples_of(model, benchmark):
    problems, tokens = OUTCOMES[model][benchmark]
    rows = []
    for index, outcome in enumerate(problems):
        for sample, mark in enumerate(outcome):
            length = tokens[len(rows)]
            correct = mark == "1"
            rows.append({
                "model": model, "benchmark": benchmark, "problem_id": f"{benchmark}-{index}", "sample": sample,
                "category": "math", "response": "...", "answer": "1" if correct else None, "score": float(correct),
                "correct": correct, "verifier": "math/1", "verify_details": "{}",
                "failure": None if correct else ("missing_answer_close" if length == 32768 else "wrong_answer"),
                "prompt_tokens": 80, "completion_tokens": length,
                "finish_reason": "length" if length == 32768 else "stop", "config_hash": "h",
            })
    return pa.Table.from_pylist(rows, schema=EVAL_SAMPLE_SCHEMA)


@pytest.fixture(scope="module")
def evaluation():
    samples = {(m, b): samples_of(m, b) for m in OUTCOMES for b in OUTCOMES[m]}
    results = {m: {b: benchmark_metrics(samples[(m, b)], ks=[1, 2, 4, 64]) for b in OUTCOMES[m]} for m in OUTCOMES}
    return results, samples


@pytest.fixture(scope="module")
def report(evaluation, tmp_path_factory):
    results, samples = evaluation
    output = tmp_path_factory.mktemp("eval") / "report"
    page = write_report(results, samples, str(output), protocol=PROTOCOL)
    assert page == str(output / "report.html")
    return output


def rows_by_key(table, width):
    header, *rows = table
    return header, {tuple(row[:width]): dict(zip(header, row)) for row in rows}


def test_the_results_table_shows_exactly_the_numbers_of_the_results(evaluation, report):
    results, _ = evaluation
    header, rows = rows_by_key(Tables((report / "report.html").read_text()).tables["results"], 2)
    assert header == ["model", "benchmark", "problems", "samples per problem", "pass@1", "pass@1 s.e.", "pass@2",
                      "pass@4", "cons@1", "cons@2", "cons@4", "truncated %", "mean tokens"]
    assert set(rows) == {(m, b) for m in results for b in results[m]}
    for (model, benchmark), shown in rows.items():
        m = results[model][benchmark]
        expected = {"problems": m["problems"], "samples per problem": m["min_samples_per_problem"],
                    "pass@1 s.e.": m["pass@1_stderr"], "truncated %": m["truncation_rate"],
                    "mean tokens": m["response_tokens"]["all"]["mean"],
                    **{k: m.get(k) for k in header if "@" in k and k != "pass@1 s.e."}}
        assert all(shown_as(shown[column], value) for column, value in expected.items()), (model, benchmark, shown)
    # gsm8k has 2 samples per problem: its pass@4 and cons@4 are not reported, shown as an em dash and explained
    assert rows[("student", "gsm8k")]["pass@4"] == "—" and rows[("student", "gsm8k")]["pass@1"] == "83.33"
    _, skipped = rows_by_key(Tables((report / "report.html").read_text()).tables["not_reported"], 3)
    reason = skipped[("student", "gsm8k", "cons@4")]["reason"]
    assert reason == "needs 4 samples per problem; the fewest a problem has is 2"
    assert ("base", "aime24", "pass@64") in skipped


def test_response_tokens_are_shown_per_benchmark_and_by_correctness(evaluation, report):
    results, _ = evaluation
    header, rows = rows_by_key(Tables((report / "report.html").read_text()).tables["response_tokens"], 3)
    assert header == ["model", "benchmark", "samples", *TOKEN_COLUMNS]
    assert len(rows) == 4 * 3
    for (model, benchmark, subset), shown in rows.items():
        summary = results[model][benchmark]["response_tokens"][subset]
        assert all(shown_as(shown[c], summary[c]) for c in TOKEN_COLUMNS), (model, benchmark, subset, shown)
    # the student adapts: a median of 175 tokens on GSM8K against 18,000 on AIME
    assert rows[("student", "gsm8k", "all")]["median"] == "175"
    assert rows[("student", "aime24", "all")]["median"] == "18,000"
    assert rows[("base", "aime24", "correct")]["n"] == "1"


def test_failures_and_protocol_are_listed(evaluation, report):
    results, _ = evaluation
    tables = Tables((report / "report.html").read_text()).tables
    failures = {(r[0], r[1], r[2]): int(r[3]) for r in tables["failures"][1:]}
    assert failures == {(m, b, reason): count for m in results for b in results[m]
                        for reason, count in results[m][b]["failures"].items()}
    assert failures[("base", "aime24", "missing_answer_close")] == 11
    protocol = dict(tables["protocol"][1:])
    assert shown_as(protocol["sampling.temperature"], 0.6) and protocol["sampling.max_tokens"] == "32,768"
    assert protocol["models.student.sha256"] == "ab12" and protocol["stop"] == '["</answer>"]'


def test_figures_are_written_next_to_the_page_and_embedded(report):
    page = (report / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert (report / "accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert (report / "response_length.png").read_bytes().startswith(b"\x89PNG")
    assert "<script" not in page and 'src="http' not in page


def test_benchmarks_are_ordered_easiest_first(evaluation):
    results, _ = evaluation
    assert benchmarks_of(results) == ["gsm8k", "aime24"]


def test_a_model_without_samples_on_a_benchmark_is_drawn_empty(evaluation):
    _, samples = evaluation
    partial = {key: table for key, table in samples.items() if key != ("base", "aime24")}
    partial[("base", "gsm8k")] = samples[("base", "gsm8k")].slice(0, 0)
    assert length_figure(partial, ["gsm8k", "aime24"]).startswith(b"\x89PNG")


def test_the_report_is_written_to_object_storage(evaluation, s3_server):
    results, samples = evaluation
    store = Store("s3://distillery-test/eval/report", s3_server)
    assert write_report(results, samples, store) == "s3://distillery-test/eval/report/report.html"
    assert store.exists("report.html") and store.exists("response_length.png")
    assert "protocol" not in Tables(store.read_text("report.html")).tables  # none given, none shown


def test_chromium_renders_the_page(report, tmp_path):
    assert_chromium_renders(report / "report.html", tmp_path / "report.png", 3000)
