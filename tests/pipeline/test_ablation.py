"""The threshold ablation recounts the attempts log: at threshold T a candidate qualifies when it scored at least T and
was scored normally (passed, or only below the run's threshold); a query is accepted in its first round holding a
qualifying candidate for every turn; above the run's own threshold the counts are lower bounds; a multi-turn query
whose earlier turn T would have accepted elsewhere is approximate and never written."""

import random

import pyarrow as pa
import pytest

from pipeline.ablation import ablate, threshold_samples
from pipeline.response_format import format_response
from pipeline.schema import ATTEMPT_SCHEMA

RUN_THRESHOLD = 0.9
THRESHOLDS = (0.7, 0.8, 0.9, 1.0)


def attempt(query_id, round_number, score, failure, candidate=0, turn=0, tokens=100):
    text = f"<think>reasoning {query_id} {round_number}.{candidate}</think><answer>{query_id}-{turn}</answer>"
    return {
        "id": query_id, "teacher": "t", "attempt": round_number, "candidate": candidate, "turn": turn,
        "score": score, "verifier": "engine" if failure == "endpoint_error" else "math", "verify_details": "{}",
        "failure": failure, "prompt_tokens": 10, "completion_tokens": tokens,
        "finish_reason": "length" if failure == "truncated" else "stop", "config_hash": "h",
        "text": None if failure == "endpoint_error" else text,
    }


# What a run at accept_threshold 0.9 logged: each query's rounds until a candidate passed, or max_attempts (4).
LOG = [
    attempt("first_try", 1, 1.0, None),
    attempt("after_retries", 1, 0.5, "below_threshold"),
    attempt("after_retries", 2, 0.75, "below_threshold"),
    attempt("after_retries", 3, 0.95, None),
    attempt("truncated_high", 1, 1.0, "truncated"),
    attempt("truncated_high", 2, 0.85, "below_threshold"),
    attempt("truncated_high", 3, 0.2, "below_threshold"),
    attempt("truncated_high", 4, 0.0, "truncated"),
    attempt("format_failure", 1, 0.9, "missing_answer"),
    attempt("format_failure", 2, 0.0, "endpoint_error"),
    attempt("format_failure", 3, 0.92, None),
    attempt("several_candidates", 1, 0.6, "below_threshold", candidate=0),
    attempt("several_candidates", 1, 0.85, "below_threshold", candidate=1),
    attempt("several_candidates", 1, 0.97, None, candidate=2),
    attempt("several_candidates", 1, 0.97, None, candidate=3),
    *[attempt("never", r, s, "below_threshold") for r, s in enumerate([0.3, 0.5, 0.65, 0.1], start=1)],
    attempt("two_turns", 1, 0.8, "below_threshold", turn=0),
    attempt("two_turns", 2, 0.95, None, turn=0),
    attempt("two_turns", 3, 0.92, None, turn=1),
    attempt("second_turn_fails", 1, 1.0, None, turn=0),
    *[attempt("second_turn_fails", r, 0.85, "below_threshold", turn=1) for r in (2, 3, 4)],
]
USER_TURNS = {"two_turns": 2, "second_turn_fails": 2}
ATTEMPTS = pa.Table.from_pylist(LOG, schema=ATTEMPT_SCHEMA)

# query -> the round it is accepted in, per threshold (absent: not accepted)
EXPECTED = {
    0.7: {"first_try": 1, "after_retries": 2, "truncated_high": 2, "format_failure": 3, "several_candidates": 1,
          "two_turns": 3, "second_turn_fails": 2},
    0.8: {"first_try": 1, "after_retries": 3, "truncated_high": 2, "format_failure": 3, "several_candidates": 1,
          "two_turns": 3, "second_turn_fails": 2},
    0.9: {"first_try": 1, "after_retries": 3, "format_failure": 3, "several_candidates": 1, "two_turns": 3},
    1.0: {"first_try": 1},
}


def brute_force(log, user_turns, threshold):
    """Query -> accepting round, recounted row by row."""
    accepted = {}
    for query_id in {row["id"] for row in log}:
        rows = [r for r in log if r["id"] == query_id]
        turns = max(user_turns.get(query_id, 1), max(r["turn"] for r in rows) + 1)
        rounds = []
        for turn in range(turns):
            good = [r["attempt"] for r in rows if r["turn"] == turn and r["score"] >= threshold
                    and r["failure"] in (None, "below_threshold")]
            if not good:
                break
            rounds.append(min(good))
        if len(rounds) == turns:
            accepted[query_id] = rounds[-1]
    return accepted


@pytest.mark.parametrize("threshold", THRESHOLDS, ids=lambda t: f"T={t}")
def test_accepted_queries_and_their_rounds_match_a_recount_of_the_log(threshold):
    result = ablate(ATTEMPTS, USER_TURNS, threshold, RUN_THRESHOLD)
    accepted = {query_id: choice.rounds for query_id, choice in result.choices.items()}
    assert accepted == EXPECTED[threshold] == brute_force(LOG, USER_TURNS, threshold)
    assert sum(result.rounds().values()) == result.accepted == len(EXPECTED[threshold])


@pytest.mark.parametrize("threshold, exact", [(0.7, True), (0.9, True), (0.95, False), (1.0, False)])
def test_counts_above_the_runs_threshold_are_lower_bounds(threshold, exact):
    assert ablate(ATTEMPTS, USER_TURNS, threshold, RUN_THRESHOLD).exact is exact


@pytest.mark.parametrize("threshold, approximate", [(0.7, {"two_turns"}), (0.8, {"two_turns"}), (0.9, set())])
def test_multi_turn_queries_whose_history_would_differ_are_approximate(threshold, approximate):
    # two_turns: at 0.8 its first turn is accepted in round 1, but the run accepted it in round 2 and asked the
    # second turn after that answer. second_turn_fails: its first turn passed first try, at every threshold.
    result = ablate(ATTEMPTS, USER_TURNS, threshold, RUN_THRESHOLD)
    assert {q for q, c in result.choices.items() if c.approximate} == approximate


def test_the_best_qualifying_candidate_of_the_first_round_is_chosen_lowest_index_on_a_tie():
    result = ablate(ATTEMPTS, USER_TURNS, 0.7, RUN_THRESHOLD)
    chosen = [LOG[row] for row in result.choices["several_candidates"].rows]
    assert [(r["attempt"], r["candidate"], r["score"]) for r in chosen] == [(1, 2, 0.97)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_order_does_not_matter(seed):
    log = random.Random(seed).sample(LOG, len(LOG))
    table = pa.Table.from_pylist(log, schema=ATTEMPT_SCHEMA)
    for threshold in THRESHOLDS:
        result = ablate(table, USER_TURNS, threshold, RUN_THRESHOLD)
        assert {q: c.rounds for q, c in result.choices.items()} == EXPECTED[threshold]


def test_an_empty_log_accepts_nothing():
    assert ablate(ATTEMPTS.slice(0, 0), {}, 0.7, RUN_THRESHOLD).accepted == 0


QUERIES = {
    query_id: {"id": query_id, "category": "math", "source": "gsm8k",
               "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"{query_id}?"}]
               + ([{"role": "user", "content": "and then?"}] if USER_TURNS.get(query_id) == 2 else [])}
    for query_id in {row["id"] for row in LOG}
}


def test_samples_at_a_threshold_are_built_as_the_run_builds_them():
    result = ablate(ATTEMPTS, USER_TURNS, 0.8, RUN_THRESHOLD)
    dataset = threshold_samples(result, ATTEMPTS, QUERIES, "t", "think_answer")
    rows = {row["id"]: row for row in dataset.rows}
    assert set(rows) == set(EXPECTED[0.8]) - {"two_turns"}
    assert dataset.not_written == {"multi_turn_history": 1}
    retried = rows["after_retries"]
    assert retried["messages"] == [
        {"role": "user", "content": "after_retries?"},
        {"role": "assistant", "content": format_response("reasoning after_retries 3.0", "after_retries-0")},
    ]
    assert (retried["think"], retried["answer"]) == ("reasoning after_retries 3.0", "after_retries-0")
    assert (retried["verify_score"], retried["attempts"], retried["source"]) == (0.95, 3, "gsm8k")
    two = rows["second_turn_fails"]  # exact: the run accepted its first turn in round 1 too
    assert [m["role"] for m in two["messages"]] == ["user", "assistant", "user", "assistant"]
    assert (two["verify_score"], two["attempts"], two["completion_tokens"]) == (0.85, 2, 200)
    assert rows["truncated_high"]["think"] == "reasoning truncated_high 2.0"


def test_an_answer_the_response_format_cannot_split_is_counted_not_written():
    log = [attempt("bare", 1, 1.0, None)]
    log[0]["text"] = "no tags at all"
    table = pa.Table.from_pylist(log, schema=ATTEMPT_SCHEMA)
    dataset = threshold_samples(ablate(table, {}, 0.9, RUN_THRESHOLD), table, QUERIES | {"bare": QUERIES["never"]},
                                "t", "think_answer")
    assert dataset.rows == [] and dataset.not_written == {"unparseable_missing_think": 1}
