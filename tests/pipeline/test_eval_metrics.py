"""Evaluation metrics: unbiased pass@k, majority-vote cons@k, pass@1 and its standard error, response lengths, and
what a sample votes for."""

import itertools
import math
from fractions import Fraction

import pyarrow as pa
import pytest

from pipeline.eval_metrics import (
    benchmark_metrics, majority_correct, models_table, normalize_boxed, pass_at_k, token_summary, vote_key,
)
from pipeline.response_format import format_response
from pipeline.schema import EVAL_SAMPLE_SCHEMA, Query

# ---- pass@k ------------------------------------------------------------------------------------------------------

OUTCOMES = [(1, 0), (1, 1), (4, 0), (4, 1), (4, 2), (4, 4), (6, 3), (7, 2), (8, 1), (8, 5), (10, 3)]  # (n, c)


@pytest.mark.parametrize("n,c", OUTCOMES, ids=[f"n{n}-c{c}" for n, c in OUTCOMES])
def test_pass_at_k_is_the_share_of_k_subsets_holding_a_correct_sample(n, c):
    outcomes = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        brute_force = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute_force, abs=1e-12), k


def test_pass_at_1_is_the_share_of_correct_samples():
    assert pass_at_k(64, 48, 1) == pytest.approx(0.75)


@pytest.mark.parametrize("n,c,k", [(64, 1, 32), (200, 3, 100), (1000, 7, 500), (2000, 1, 1)])
def test_pass_at_k_stays_exact_where_binomials_are_huge(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


# ---- cons@k of one problem ---------------------------------------------------------------------------------------

VOTES = [
    # answers in sample order, their correctness, whether the majority is correct
    pytest.param(["7", "7", "3"], [True, True, False], True, id="majority-right"),
    pytest.param(["3", "7", "7"], [False, True, True], True, id="majority-right-after-a-wrong-first"),
    pytest.param(["7", "3", "3"], [True, False, False], False, id="majority-wrong"),
    pytest.param(["3", "7"], [False, True], False, id="tie-goes-to-the-first-answer"),
    pytest.param(["7", "3", "3", "7"], [True, False, False, True], True, id="tie-of-two-each-first-seen-wins"),
    pytest.param([None, None, "7"], [False, False, True], True, id="nulls-do-not-vote"),
    pytest.param([None, "3", None, None], [True, False, False, False], False, id="nulls-outnumber-but-do-not-vote"),
    pytest.param([None, None], [False, False], False, id="no-votes-is-wrong"),
    pytest.param(["7", "7"], [False, True], False, id="the-first-sample-carrying-the-answer-decides"),
]


@pytest.mark.parametrize("answers,correct,expected", VOTES)
def test_the_majority_answer_decides_a_problem(answers, correct, expected):
    assert majority_correct(answers, correct) is expected


# ---- what a sample votes for -------------------------------------------------------------------------------------

MATH = Query(category="math", prompt="What is 6 * 7?", reference={"answer": "42"})
DIGIT_GOLD = Query(category="math", prompt="What is 1 + 2?", reference={"answer": "3"})  # looks like a choice label
SCIENCE = Query(category="science", prompt="Which? (A) x (B) y (C) z", reference={"answer": "C"})
FREE_SCIENCE = Query(category="science", prompt="Why is the sky blue?", reference={"answer": "Rayleigh scattering"})
CODE = Query(category="code", prompt="Write f.",
             reference={"tests": {"kind": "assert", "asserts": ["assert f() == 1"]}, "entry_point": "f"})


def answered(answer, think="Let me work it out."):
    return format_response(think, answer)


VOTE_KEYS = [
    pytest.param(MATH, answered("\\boxed{42}"), "think_answer", "42", id="math-boxed"),
    pytest.param(MATH, answered("So it is $\\boxed{ 42 }$."), "think_answer", "42", id="math-spaces-in-the-box"),
    pytest.param(MATH, answered("\\boxed{\\text{42}}."), "think_answer", "42", id="math-text-wrapper"),
    pytest.param(MATH, answered("\\boxed{{42}}"), "think_answer", "42", id="math-outer-braces"),
    pytest.param(MATH, answered("\\boxed{$42$}"), "think_answer", "42", id="math-dollars-in-the-box"),
    pytest.param(MATH, answered("\\boxed{\\dfrac{1}{2}}"), "think_answer", "\\frac{1}{2}", id="math-dfrac-is-frac"),
    pytest.param(MATH, answered("\\boxed{\\left( 1,\\, 2 \\right)}"), "think_answer", "(1,2)", id="math-sizing"),
    pytest.param(MATH, answered("\\boxed{2 \\pi r}"), "think_answer", "2\\pi r", id="math-space-between-letters"),
    pytest.param(MATH, answered("\\boxed{41} no wait \\boxed{42}"), "think_answer", "42", id="math-last-box"),
    pytest.param(MATH, answered("42", think="Maybe \\boxed{41}."), "think_answer", None, id="math-box-only-in-think"),
    pytest.param(MATH, answered("The answer is 42."), "think_answer", None, id="math-no-box"),
    pytest.param(MATH, answered("\\boxed{ }"), "think_answer", None, id="math-empty-box"),
    pytest.param(MATH, "<think>I am cut off \\boxed{42", "think_answer", None, id="math-truncated"),
    pytest.param(MATH, "<think>6*7</think>\n\\boxed{42}", "think_then_answer", "42", id="math-think-then-answer"),
    pytest.param(MATH, "6 * 7 = 42\nThe answer is \\boxed{42}.", "plain", "42", id="math-plain"),
    pytest.param(DIGIT_GOLD, answered("\\boxed{3}"), "think_answer", "3", id="math-with-a-digit-gold-is-math"),
    pytest.param(SCIENCE, answered("The answer is (C)."), "think_answer", "C", id="choice-stated"),
    pytest.param(SCIENCE, answered("\\boxed{c}"), "think_answer", "C", id="choice-boxed-lower-case"),
    pytest.param(SCIENCE, answered("It is A or C."), "think_answer", None, id="choice-hedged"),
    pytest.param(FREE_SCIENCE, answered("\\boxed{scattering}"), "think_answer", None, id="free-science-no-vote"),
    pytest.param(CODE, answered("```python\ndef f():\n    return 1\n```"), "think_answer", None, id="code-no-vote"),
]


@pytest.mark.parametrize("query,response,response_format,expected", VOTE_KEYS)
def test_what_a_sample_votes_for(query, response, response_format, expected):
    assert vote_key(query, response, response_format) == expected


@pytest.mark.parametrize("spellings", [
    pytest.param(["42", " 42 ", "{42}", "\\text{42}", "$42$", "42.", "\\mathrm{ 42 }"], id="forty-two"),
    pytest.param(["x + 1", "x+1", "\\displaystyle x + 1", "x\\,+\\,1"], id="layout"),
    pytest.param(["\\frac{3}{4}", "\\dfrac{3}{4}", "\\tfrac{3}{4}", "\\dfrac{3}{4}."], id="fractions"),
])
def test_trivially_different_spellings_vote_together(spellings):
    assert len({normalize_boxed(s) for s in spellings}) == 1


def test_different_answers_vote_apart():
    keys = [normalize_boxed(s) for s in ["42", "4 2", "0.5", "\\frac{1}{2}", "\\pi r", "\\pir", "(1,2)", "[1,2]"]]
    assert len(set(keys)) == len(keys) - 1  # "4 2" is "42" with a space; every other spelling stands apart


# ---- one model on one benchmark ----------------------------------------------------------------------------------


def samples_table(rows, model="student", benchmark="math500"):
    """EVAL_SAMPLE_SCHEMA rows from (problem_id, sample, answer, correct, completion_tokens, finish_reason,
    failure)."""
    return pa.Table.from_pylist([
        {"model": model, "benchmark": benchmark, "problem_id": p, "sample": s, "category": "math",
         "response": f"... \\boxed{{{a}}}", "answer": a, "score": float(c), "correct": c, "verifier": "math/1",
         "verify_details": "{}", "failure": f, "prompt_tokens": 50, "completion_tokens": t, "finish_reason": r,
         "config_hash": "h"}
        for p, s, a, c, t, r, f in rows
    ], schema=EVAL_SAMPLE_SCHEMA)


# Three problems, four samples each, rows out of sample order (as shards may come back).
ROWS = [
    # p1: 3 of 4 correct; everyone answers 5 but sample 2 ran out of tokens before boxing
    ("p1", 1, "5", True, 200, "stop", None),
    ("p1", 0, "5", True, 100, "stop", None),
    ("p1", 2, None, False, 1000, "length", "missing_answer_close"),
    ("p1", 3, "5", True, 300, "stop", None),
    # p2: 1 of 4 correct; the first two samples tie 8 (wrong) against 9 (right): the first seen, 8, wins cons@2;
    # over four samples 9 gets two votes to 8's one
    ("p2", 0, "8", False, 400, "stop", "wrong_answer"),
    ("p2", 1, "9", True, 500, "stop", None),
    ("p2", 3, "9", False, 700, "stop", "wrong_answer"),  # the verifier's call stands; sample 1 carries 9 first
    ("p2", 2, None, False, 600, "stop", "no_answer_extracted"),
    # p3: none correct, no votes
    ("p3", 0, None, False, 800, "length", "missing_answer_close"),
    ("p3", 1, None, False, 900, "error", "request_failed"),
    ("p3", 2, None, False, 1000, "length", "missing_answer_close"),
    ("p3", 3, None, False, 1100, "length", "missing_answer_close"),
]


@pytest.fixture(scope="module")
def metrics():
    return benchmark_metrics(samples_table(ROWS), ks=[1, 2, 4, 8])


def test_counts(metrics):
    assert (metrics["problems"], metrics["samples"]) == (3, 12)
    assert (metrics["min_samples_per_problem"], metrics["max_samples_per_problem"]) == (4, 4)


def test_pass_at_1_is_the_mean_of_per_problem_shares_with_its_standard_error(metrics):
    # shares 3/4, 1/4, 0: mean 1/3; deviations 5/12, -1/12, -4/12; sum of squares 42/144 over 2 = 7/48
    assert metrics["pass@1"] == round(100 / 3, 2) == 33.33
    assert metrics["pass@1_stderr"] == round(100 * math.sqrt(7 / 48) / math.sqrt(3), 2) == 22.05


def test_pass_at_k_averages_the_unbiased_estimator_over_problems(metrics):
    # pass@2: p1 1 - C(1,2)/C(4,2) = 1; p2 1 - C(3,2)/C(4,2) = 1/2; p3 0
    assert metrics["pass@2"] == 50.0
    assert metrics["pass@4"] == round(100 * 2 / 3, 2)


def test_cons_at_k_votes_over_each_problems_first_k_samples(metrics):
    # cons@1: p1 votes 5 (right); p2's first sample votes 8 (wrong); p3 has no vote
    assert metrics["cons@1"] == round(100 / 3, 2)
    assert metrics["cons@2"] == round(100 / 3, 2)  # p2: 8 and 9 tie, 8 came first
    assert metrics["cons@4"] == round(200 / 3, 2)  # p2: 9 wins 2 to 1, and sample 1 carrying it is right


def test_a_k_beyond_the_samples_is_listed_as_not_reported(metrics):
    assert "pass@8" not in metrics and "cons@8" not in metrics
    assert metrics["not_reported"] == {
        "pass@8": "needs 8 samples per problem; the fewest a problem has is 4",
        "cons@8": "needs 8 samples per problem; the fewest a problem has is 4",
    }


def test_truncation_rate_and_failures(metrics):
    assert metrics["truncation_rate"] == 33.33  # 4 of 12 stopped at max tokens; the errored request is not one
    assert metrics["failures"] == {"missing_answer_close": 4, "wrong_answer": 2, "no_answer_extracted": 1,
                                   "request_failed": 1}


def test_response_tokens_overall_and_by_correctness(metrics):
    tokens = metrics["response_tokens"]
    assert tokens["correct"] == {
        "n": 4, "mean": 275.0, "median": 250, "p10": 130, "p25": 175, "p75": 350, "p90": 440, "p99": 494,
        "max": 500, "under_1024_pct": 100.0, "over_10240_pct": 0.0,
    }
    incorrect = tokens["incorrect"]
    assert (incorrect["n"], incorrect["mean"], incorrect["median"], incorrect["max"]) == (8, 812.5, 850, 1100)
    assert (incorrect["p10"], incorrect["p90"], incorrect["under_1024_pct"]) == (540, 1030, 87.5)
    assert (tokens["all"]["n"], tokens["all"]["mean"], tokens["all"]["median"]) == (12, 633.3, 650)


def test_uneven_samples_per_problem_report_only_ks_every_problem_has():
    rows = [("p1", s, "1", True, 10, "stop", None) for s in range(4)] + [("p2", 0, "2", False, 10, "stop", None),
                                                                        ("p2", 1, "3", True, 10, "stop", None)]
    metrics = benchmark_metrics(samples_table(rows), ks=[2, 4])
    assert (metrics["min_samples_per_problem"], metrics["max_samples_per_problem"]) == (2, 4)
    assert metrics["pass@1"] == 75.0 and metrics["pass@2"] == 100.0 and metrics["cons@2"] == 50.0
    assert set(metrics["not_reported"]) == {"pass@4", "cons@4"}


def test_one_problem_has_no_spread():
    metrics = benchmark_metrics(samples_table([("p1", 0, "1", True, 10, "stop", None),
                                               ("p1", 1, "2", False, 30, "stop", "wrong_answer")]), ks=[2])
    assert (metrics["pass@1"], metrics["pass@1_stderr"], metrics["pass@2"], metrics["cons@2"]) == (50.0, 0.0,
                                                                                                   100.0, 100.0)


def test_no_samples_yet_gives_empty_metrics():
    metrics = benchmark_metrics(samples_table([]), ks=[1, 4])
    assert (metrics["problems"], metrics["pass@1"], metrics["pass@1_stderr"], metrics["truncation_rate"]) == (
        0, None, None, None)
    assert metrics["response_tokens"]["all"] == token_summary([]) and token_summary([])["mean"] is None
    assert set(metrics["not_reported"]) == {"pass@1", "cons@1", "pass@4", "cons@4"}


@pytest.mark.parametrize("table,problem", [
    pytest.param(samples_table(ROWS[:2] + ROWS[1:2]), "problem p1 holds sample 0 twice", id="duplicate-sample"),
    pytest.param(pa.concat_tables([samples_table(ROWS[:2]), samples_table(ROWS[2:4], model="other")]),
                 "samples of several models", id="two-models"),
    pytest.param(samples_table(ROWS).drop_columns(["answer"]), "lacks column\\(s\\) answer", id="missing-column"),
    pytest.param(samples_table(ROWS).set_column(8, "correct", pa.array([None] * 12, pa.bool_())),
                 "`correct` is null", id="null-correct"),
])
def test_samples_that_would_bias_the_numbers_are_refused(table, problem):
    with pytest.raises(ValueError, match=problem):
        benchmark_metrics(table, ks=[1])


def test_models_table_lines_up_one_row_per_model_and_benchmark(metrics):
    one = benchmark_metrics(samples_table([("q", 0, "1", True, 1234, "stop", None)], benchmark="gsm8k"), ks=[1])
    text = models_table({"student": {"math500": metrics, "gsm8k": one}, "teacher-distilled": {"gsm8k": one}})
    lines = text.splitlines()
    assert lines[0].split() == ["model", "benchmark", "problems", "n", "pass@1", "±", "se", "cons@k", "mean",
                                "tokens", "truncated", "%"]
    assert lines[2].split() == ["student", "math500", "3", "4", "33.33", "±", "22.05", "cons@4", "66.67", "633.3",
                                "33.33"]
    assert lines[4].split() == ["teacher-distilled", "gsm8k", "1", "1", "100.00", "±", "0.00", "cons@1", "100.00",
                                "1,234.0", "0.00"]
    assert len({len(line) for line in lines[:2]}) == 1 and all(len(line) <= len(lines[0]) for line in lines)
