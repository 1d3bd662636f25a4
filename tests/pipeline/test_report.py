"""The report's numbers from Arrow tables: cost and yield as the distill summary counts them, length percentiles and
the paper's short/long shares, pass rates that leave failed requests out; and a page that shows each table's values
aligned, escaped and self-contained."""

import pyarrow as pa
import pytest

from pipeline.report import (
    ALL, TeacherRun, TeacherTables, build_report, length_summary, pass_rates, read_teacher, table, teacher_yield,
    value_summary,
)
from pipeline.report_html import format_cell, render_html
from pipeline.storage import Store


def attempts(rows):
    """(id, category, attempt, score, failure, completion_tokens) rows of an attempts log."""
    return pa.table({
        "id": [r[0] for r in rows], "category": [r[1] for r in rows],
        "attempt": pa.array([r[2] for r in rows], pa.int32()), "candidate": pa.array([0] * len(rows), pa.int32()),
        "turn": pa.array([0] * len(rows), pa.int32()), "score": pa.array([r[3] for r in rows], pa.float64()),
        "failure": pa.array([r[4] for r in rows], pa.string()),
        "completion_tokens": pa.array([r[5] for r in rows], pa.int64()), "verifier": ["math"] * len(rows),
    })


LOG = attempts([
    ("a", "math", 1, 1.0, None, 100),
    ("b", "math", 1, 0.5, "below_threshold", 300), ("b", "math", 2, 0.0, "endpoint_timeout", 0),
    ("b", "math", 3, 0.95, None, 200),
    ("c", "code", 1, 0.0, "truncated", 4000), ("c", "code", 2, 0.2, "below_threshold", 1000),
])
ACCEPTED = pa.table({"id": ["a", "b"], "category": ["math", "math"], "attempts": pa.array([1, 3], pa.int32()),
                     "completion_tokens": pa.array([100, 200], pa.int64()), "verify_score": [1.0, 0.95]})
REJECTS = pa.table({"id": ["c"], "reason": ["exhausted"], "attempts": pa.array([2], pa.int32()),
                    "category": ["code"]})


def test_yield_counts_what_is_committed():
    y = teacher_yield(4, ACCEPTED, REJECTS, LOG)
    assert (y.queries, y.accepted, y.rejected, y.mean_attempts) == (4, 2, {"exhausted": 1}, 2.0)
    assert (y.generated_tokens, y.tokens_per_accepted, y.acceptance_rate) == (5600, 2800, 0.5)


def test_a_teacher_with_nothing_committed_yet_yields_zeros(tmp_path):
    tables = read_teacher(Store(str(tmp_path)), "nobody")
    y = teacher_yield(3, tables.accepted, tables.rejects, tables.attempts)
    assert (y.accepted, y.rejected, y.mean_attempts, y.generated_tokens, y.tokens_per_accepted) == (0, {}, 0.0, 0, None)


@pytest.mark.parametrize(
    "lengths, expected",
    [
        pytest.param(list(range(1, 101)), {"n": 100, "p10": 11, "p50": 50, "p99": 99, "under_1024_pct": 100.0,
                                           "over_10240_pct": 0.0}, id="all-short"),
        pytest.param([500, 1024, 5000, 10240, 20000], {"n": 5, "p50": 5000, "under_1024_pct": 20.0,
                                                       "over_10240_pct": 20.0}, id="the-marks-are-neither"),
        pytest.param([], {"n": 0, "p50": None, "under_1024_pct": None}, id="none"),
    ],
)
def test_length_percentiles_and_the_papers_shares(lengths, expected):
    summary = length_summary(pa.array(lengths, pa.int64()))
    assert {k: summary[k] for k in expected} == expected


def test_value_summary_leaves_nulls_out():
    assert value_summary(pa.array([2.0, None, 3.0, 4.0])) == {"n": 3, "mean": 3.0, "p10": 2.2, "p50": 3.0, "p90": 3.8}


def test_pass_rates_count_scored_candidates_only():
    rates = {r["id"]: r["pass_rate"] for r in pass_rates(LOG).to_pylist()}
    assert rates == {"a": 1.0, "b": 0.5, "c": 0.0}  # b's timed-out request is no candidate


@pytest.mark.parametrize(
    "value, decimals, shown",
    [(None, 0, "—"), (12345, 0, "12,345"), (2.5, 2, "2.50"), (1234.5, 1, "1,234.5"), ("math", 0, "math")],
)
def test_cells_show_values_as_report_json_holds_them(value, decimals, shown):
    assert format_cell(value, decimals) == shown


def teacher(label, filtered=None):
    queries = pa.table({"id": ["a", "b", "c", "d"], "category": ["math", "math", "code", "code"],
                        "user_turns": pa.array([1, 1, 1, 1], pa.int64())})
    tables = TeacherTables(label, ACCEPTED, REJECTS, LOG)
    if filtered is not None:
        tables.filtered = filtered
        tables.filter_rejects = filtered.slice(0, 0).append_column("filter_reason", pa.array([], pa.string()))
    return TeacherRun(label, "run", {"name": label, "accept_threshold": 0.9}, queries, tables)


def test_sections_cover_every_teacher_and_category():
    filtered = pa.table({"id": ["a", "b"], "category": ["math", "math"], "ppl": [2.0, 3.0],
                         "response_tokens": pa.array([90, 180], pa.int64())})
    sections = build_report([teacher("x", filtered), teacher("y")], thresholds=[0.5, 1.0])
    assert [s.id for s in sections] == ["summary", "lengths", "perplexity", "verification", "ablation", "rejects"]
    summary = sections[0].tables[0]
    assert [r[:2] for r in summary["rows"]] == [["x", ALL], ["x", "code"], ["x", "math"], ["y", ALL], ["y", "code"],
                                               ["y", "math"]]
    assert summary["rows"][0][-1] == 2.5 and summary["rows"][3][-1] is None
    assert "No jobs.filter output for y" in sections[2].intro
    ablation = {(r[0], r[1]): r for r in sections[4].tables[0]["rows"]}
    assert ablation[("x", 0.5)][2:5] == ["exact", 4, 2] and ablation[("x", 1.0)][2:5] == ["lower bound", 4, 1]
    assert all(f.png.startswith(b"\x89PNG") for s in sections for f in s.figures)


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    sections = build_report([teacher("<b>x</b>")], thresholds=[0.9])
    sections[0].tables.append(table("extra", "A & B", ["teacher", "n"], [["<script>", 1]]))
    page = render_html("Report", [{"path": "run", "teachers": ["<b>x</b>"]}], sections)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page and 'src="data:image/png;base64,' in page
    assert '<td class=num>1</td>' in page
