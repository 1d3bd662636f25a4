"""`python -m jobs.analyze` over two run folders written as jobs.distill writes them (Store and ShardWriter, the run's
schemas), locally and on a real S3-compatible server (moto): one HTML page whose tables hold exactly report.json's
numbers and that Chromium renders, figures beside it, the dataset at another threshold when the attempts kept their
text, and a clear refusal (exit 2, one line naming the path) otherwise. No Ray, no vLLM."""

import html.parser
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.analyze import main
from pipeline.response_format import format_response
from pipeline.schema import ATTEMPT_SCHEMA, QUERY_SCHEMA, REJECT_SCHEMA, SAMPLE_SCHEMA
from pipeline.storage import ShardWriter, Store
from tests.conftest import assert_chromium_renders

ACCEPT_THRESHOLD, MAX_ATTEMPTS = 0.9, 4
TRUNCATED = "truncated"  # a candidate cut off at max_tokens: never passes, whatever it scored

# Per query: category, then the candidates' (score, completion tokens) per round, as the teacher would have generated
# them had the run not stopped at the first round passing 0.9.
AM = {
    "q0": ("math", [(0.95, 300)]),
    "q1": ("math", [(0.5, 900), (0.85, 2000), (0.92, 1500)]),
    "q2": ("math", [(0.3, 400), (0.4, 500), (0.2, 600), (0.1, 700)]),
    "q3": ("math", [(TRUNCATED, 16000), (0.99, 12000)]),
    "q4": ("code", [(0.82, 800), (0.6, 700), (0.7, 650), (0.81, 900)]),
    "q5": ("code", [(1.0, 5000)]),
}
R1 = {
    "q0": ("math", [(0.2, 11000), (1.0, 14000)]),
    "q1": ("math", [(1.0, 3000)]),
    "q2": ("math", [(0.0, 500), (0.0, 500), (0.0, 500), (0.0, 500)]),
    "q3": ("math", [(0.95, 9000)]),
    "q4": ("code", [(0.9, 2500)]),
    "q5": ("code", [(0.7, 4000), (0.96, 4200)]),
}
# What the run at 0.8 would have kept of AM: query -> (round, tokens of the answer).
AM_AT_08 = {"q0": (1, 300), "q1": (2, 2000), "q3": (2, 12000), "q4": (1, 800), "q5": (1, 5000)}


def text(teacher, query_id, round_number):
    return f"<think>{teacher} reasons about {query_id} in round {round_number}</think><answer>{query_id}</answer>"


def write_run(root, teachers, storage_options=None, log_text=True, filtered=()):
    """A finished distill run: config.json, queries/, and per teacher accepted/, rejects/ and attempts/ as the
    regenerate loop commits them (rounds until one passes 0.9, or 4); `filtered` names teachers jobs.filter ran on."""
    store = Store(root, storage_options)
    names = list(teachers)
    store.write_text("config.json", json.dumps({"config_hash": "h", "config": {"teachers": [
        {"name": n, "accept_threshold": ACCEPT_THRESHOLD, "response_format": "think_answer", "log_text": log_text}
        for n in names]}}))
    queries = {q: c for t in teachers.values() for q, (c, _) in t.items()}
    writer = ShardWriter(store, "queries", QUERY_SCHEMA, 100, 60)
    writer.add({"id": q, "category": c, "messages": [{"role": "user", "content": f"{q}?"}], "reference": None,
                "source": "test", "metadata": "{}"} for q, c in sorted(queries.items()))
    writer.flush()
    store.write_text("queries/_SUCCESS", json.dumps({"queries": len(queries), "rejected": {}, "rows_read": 6}))
    attempt_schema = ATTEMPT_SCHEMA if log_text else pa.schema([f for f in ATTEMPT_SCHEMA if f.name != "text"])
    for name, plan in teachers.items():
        out = {kind: ShardWriter(store, f"teachers/{name}/{kind}", schema, 100, 60) for kind, schema in
               [("accepted", SAMPLE_SCHEMA), ("rejects", REJECT_SCHEMA), ("attempts", attempt_schema)]}
        kept = []
        for query_id, (category, rounds) in plan.items():
            for number, (score, tokens) in enumerate(rounds, start=1):
                truncated = score == TRUNCATED
                passed = not truncated and score >= ACCEPT_THRESHOLD
                row = {"id": query_id, "teacher": name, "attempt": number, "candidate": 0, "turn": 0,
                       "score": 0.0 if truncated else score, "verifier": "math", "verify_details": "{}",
                       "failure": None if passed else (TRUNCATED if truncated else "below_threshold"),
                       "prompt_tokens": 20, "completion_tokens": tokens,
                       "finish_reason": "length" if truncated else "stop", "config_hash": "h"}
                out["attempts"].add([row | {"text": text(name, query_id, number)} if log_text else row])
                if passed:
                    out["accepted"].add([{
                        "id": query_id, "category": category, "teacher": name,
                        "messages": [{"role": "user", "content": f"{query_id}?"}, {"role": "assistant", "content":
                                     format_response(f"{name} reasons about {query_id} in round {number}", query_id)}],
                        "think": "", "answer": query_id, "verify_score": score, "verifier": "math",
                        "verify_details": "{}", "attempts": number, "prompt_tokens": 20, "completion_tokens": tokens,
                        "finish_reason": "stop", "source": "test", "config_hash": "h"}])
                    kept.append((query_id, category, tokens))
                    break
                if number == MAX_ATTEMPTS:
                    out["rejects"].add([{"id": query_id, "origin": "", "stage": "distill", "teacher": name,
                                         "reason": "exhausted", "detail": "{}", "attempts": number,
                                         "best_score": 0.5, "raw": None, "config_hash": "h"}])
        for writer in out.values():
            writer.flush()
        if name in filtered:  # jobs.filter's columns: the sample's, then ppl, response_tokens, max_ngram_count
            rows = [{"id": q, "category": c, "ppl": 2.0 + i / 4, "response_tokens": t, "max_ngram_count": 3}
                    for i, (q, c, t) in enumerate(kept)]
            store.write_shard(f"teachers/{name}/filtered", "part-0.parquet", pa.Table.from_pylist(rows[:-1]))
            store.write_shard(f"teachers/{name}/filter_rejects", "part-0.parquet", pa.Table.from_pylist(
                [rows[-1] | {"filter_reason": "perplexity", "filter_detail": "ppl 3.0 > 2.9"}]))


class Tables(html.parser.HTMLParser):
    """The page's tables by id: rows of cell texts, the header row first."""

    def __init__(self, page):
        super().__init__()
        self.tables, self._table, self._cell = {}, None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def shown_as(cell, value):
    if value is None:
        return cell == "—"
    if isinstance(value, (int, float)):
        return float(cell.replace(",", "")) == value
    return cell == value


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_run(str(root / "run_a"), {"am": AM, "r1": R1}, filtered=("am",))
    write_run(str(root / "run_b"), {"r1": R1}, log_text=False)
    write_run(str(root / "run_old"), {"r1": R1}, log_text=False)  # from before the log kept text: no such setting
    config = json.loads((root / "run_old/config.json").read_text())
    del config["config"]["teachers"][0]["log_text"]
    (root / "run_old/config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def report(runs):
    output = runs / "report"
    assert main(["--runs", str(runs / "run_a"), str(runs / "run_b"), "--output", str(output)]) == 0
    return output


def table_of(report_json, table_id):
    return next(t for s in report_json["sections"] for t in s["tables"] if t["id"] == table_id)


def test_the_page_shows_exactly_the_numbers_of_report_json(report):
    data = json.loads((report / "report.json").read_text())
    page = Tables((report / "report.html").read_text())
    tables = [t for s in data["sections"] for t in s["tables"]]
    assert {t["id"] for t in tables} == set(page.tables)
    for t in tables:
        header, *rows = page.tables[t["id"]]
        assert header == t["columns"]
        assert len(rows) == len(t["rows"]), t["id"]
        for shown, row in zip(rows, t["rows"]):
            assert all(shown_as(c, v) for c, v in zip(shown, row)) and len(shown) == len(row), (t["id"], shown, row)


def test_teachers_of_several_runs_are_labelled_by_run_and_compared(report):
    data = json.loads((report / "report.json").read_text())
    assert data["teachers"] == ["run_a/am", "run_a/r1", "run_b/r1"]
    summary = {(r[0], r[1]): dict(zip(table_of(data, "summary")["columns"], r))
               for r in table_of(data, "summary")["rows"]}
    am = summary[("run_a/am", "all")]
    # 4 of 6 accepted; rounds 1+3+4+2+4+1 over 6 queries; every logged candidate's tokens over 4 samples
    assert (am["queries"], am["accepted"], am["acceptance %"], am["mean attempts"]) == (6, 4, 66.7, 2.5)
    assert am["generated tokens per accepted"] == round(sum(t for _, r in AM.values() for _, t in r[:4]) / 4)
    assert am["mean perplexity"] == 2.375 and summary[("run_a/r1", "all")]["mean perplexity"] is None
    assert summary[("run_a/am", "code")]["accepted"] == 1


def test_the_threshold_ablation_is_read_from_the_attempts_log(report):
    data = json.loads((report / "report.json").read_text())
    columns = table_of(data, "ablation")["columns"]
    rows = {(r[0], r[1]): dict(zip(columns, r)) for r in table_of(data, "ablation")["rows"]}
    assert [rows[("run_a/am", t)]["accepted"] for t in (0.7, 0.8, 0.9, 1.0)] == [5, 5, 4, 1]
    assert rows[("run_a/am", 1.0)]["count is"] == "lower bound" and rows[("run_a/am", 0.9)]["count is"] == "exact"
    assert rows[("run_a/am", 0.8)]["mean rounds"] == round((1 + 2 + 2 + 1 + 1) / 5, 2)


def test_the_report_says_to_run_the_filter_where_it_has_not_run(report):
    data = json.loads((report / "report.json").read_text())
    perplexity = next(s for s in data["sections"] if s["id"] == "perplexity")
    assert "No jobs.filter output for run_a/r1, run_b/r1" in perplexity["intro"]
    assert table_of(data, "filter_rejects")["rows"] == [["run_a/am", 1, 1]]


def test_figures_are_files_and_embedded(report):
    data = json.loads((report / "report.json").read_text())
    figures = [f["file"] for s in data["sections"] for f in s["figures"]]
    assert len(figures) == 5
    page = (report / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(figures)
    assert all((report / f).read_bytes().startswith(b"\x89PNG") for f in figures)


def test_chromium_renders_the_page(report, tmp_path):
    assert_chromium_renders(report / "report.html", tmp_path / "report.png", 4000)


def test_the_dataset_at_another_threshold_is_a_training_source(runs, tmp_path):
    output = tmp_path / "report"
    assert main(["--runs", str(runs / "run_a"), "--output", str(output), "--write-threshold", "0.8"]) == 0
    samples = pq.read_table(output / "datasets/am/threshold_0.8")
    assert samples.schema.equals(SAMPLE_SCHEMA)
    rows = {r["id"]: r for r in samples.to_pylist()}
    assert {q: (r["attempts"], r["completion_tokens"]) for q, r in rows.items()} == AM_AT_08
    assert rows["q1"]["think"] == "am reasons about q1 in round 2" and rows["q1"]["verify_score"] == 0.85
    assert rows["q1"]["messages"][-1]["content"] == format_response("am reasons about q1 in round 2", "q1")
    assert pq.read_table(output / "datasets/r1/threshold_0.8").num_rows == 5
    written = table_of(json.loads((output / "report.json").read_text()), "datasets")["rows"]
    assert [r[:5] for r in written] == [["am", 0.8, "exact", 5, 5], ["r1", 0.8, "exact", 5, 5]]


@pytest.mark.parametrize(
    "run, problem",
    [
        pytest.param("run_b", "teacher r1 ran with log_text: false", id="log-text-off"),
        pytest.param("run_old", "teachers/r1/attempts has no `text` column", id="old-run"),
    ],
)
def test_a_run_without_candidate_text_is_refused_for_writing(runs, tmp_path, capsys, run, problem):
    output = tmp_path / "report"
    code = main(["--runs", str(runs / "run_a"), str(runs / run), "--output", str(output),
                 "--write-threshold", "0.8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"runs {runs / run}: {problem}"), err
    assert not output.exists()


@pytest.mark.parametrize(
    "bad, problem",
    [
        pytest.param("{root}/missing", "no such folder", id="missing"),
        pytest.param("{root}/run_a/queries", "not a distill run folder (no config.json)", id="not-a-run"),
    ],
)
def test_a_bad_run_path_is_refused_before_anything_is_written(runs, tmp_path, capsys, bad, problem):
    bad = bad.format(root=runs)
    assert main(["--runs", str(runs / "run_a"), bad, "--output", str(tmp_path / "report")]) == 2
    assert capsys.readouterr().err.strip() == f"runs {bad}: {problem}"
    assert not (tmp_path / "report").exists()


def test_runs_and_report_on_object_storage(s3_server, tmp_path):
    root = "s3://distillery-test/analyze"
    write_run(f"{root}/run_a", {"am": AM}, s3_server)
    write_run(f"{root}/run_b", {"r1": R1}, s3_server)
    options = json.dumps(s3_server)
    assert main(["--runs", f"{root}/run_a", f"{root}/run_b", "--output", f"{root}/report", "--write-threshold",
                 "0.8", "--storage-options", options]) == 0
    store = Store(f"{root}/report", s3_server)
    report = json.loads(store.read_text("report.json"))
    assert report["teachers"] == ["run_a/am", "run_b/r1"]
    assert [r[4] for r in table_of(report, "datasets")["rows"]] == [5, 5]
    assert store.read_table("datasets/run_a/am/threshold_0.8").num_rows == 5
    assert store.exists("report.html") and store.exists("figures/threshold_ablation.png")
    assert main(["--runs", f"{root}/nothing", "--output", str(tmp_path), "--storage-options", options]) == 2
