"""Post-generation quality filters: token n-grams within a response and across a corpus, thresholds (a percentile
resolved over the teacher's perplexities), the student-side measures of a sample, and the decision with its reason."""

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config import FilterConfig
from pipeline.packing import tokenize_conversation
from pipeline.quality import (
    Thresholds, decide, distinct_ngram_hashes, max_ngram_count, measure, ngram_hashes, resolve_thresholds, summarize,
)
from pipeline.response_format import format_response
from tests.tiny_student import tokenizer


def sample(think="2 and 2 make 4.", answer="4", prompt="What is 2 + 2?", last=None):
    turn = last if last is not None else format_response(think, answer)
    return {"id": "s1", "think": think, "answer": answer,
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": turn}]}


@pytest.mark.parametrize(
    "tokens, n, expected",
    [
        pytest.param([1, 2, 3, 4, 5] * 10, 5, 10, id="a-loop-of-ten"),
        pytest.param(list(range(50)), 5, 1, id="no-repeat"),
        pytest.param([7, 7, 7], 5, 0, id="shorter-than-n"),
        pytest.param([0] * 6, 5, 2, id="token-zero-counts"),
    ],
)
def test_max_ngram_count_is_the_most_frequent_windows_occurrences(tokens, n, expected):
    assert max_ngram_count(tokens, n) == expected


def test_an_ngram_hashes_alike_wherever_it_occurs_and_unlike_its_neighbours():
    first = ngram_hashes([9, 1, 2, 3, 8], 3)
    second = ngram_hashes([1, 2, 3], 3)
    assert first[1] == second[0] and len(set(first.tolist())) == 3
    assert ngram_hashes([0, 1, 2], 3)[0] != ngram_hashes([1, 2, 0], 3)[0]


def test_a_response_counts_each_of_its_ngrams_once_for_the_corpus():
    assert len(distinct_ngram_hashes([1, 2, 3] * 5, 3)) == 3


def test_an_absolute_threshold_is_applied_as_given():
    config = FilterConfig.model_validate({"perplexity": {"max_ppl": 40.0}})
    assert resolve_thresholds(config, pa.array([1.0, 100.0])).max_ppl == 40.0


def test_a_percentile_resolves_over_the_teachers_scored_perplexities():
    config = FilterConfig.model_validate({"perplexity": {"max_ppl_percentile": 95}})
    ppls = pa.array([float(v) for v in range(1, 101)] + [None, float("inf")], pa.float64())
    thresholds = resolve_thresholds(config, ppls)
    assert thresholds.max_ppl == pytest.approx(np.percentile(range(1, 101), 95)), "unscored and infinite left out"
    assert thresholds.max_ppl_percentile == 95
    assert resolve_thresholds(config, pa.array([None], pa.float64())).max_ppl is None


def test_both_thresholds_at_once_are_refused():
    from pipeline.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="perplexity: Value error, give max_ppl or max_ppl_percentile"):
        parse_config(FilterConfig, {"perplexity": {"max_ppl": 10, "max_ppl_percentile": 90}})


def test_thresholds_change_the_config_hash_but_not_the_scoring_hash():
    base = FilterConfig()
    stricter = FilterConfig.model_validate({"perplexity": {"max_ppl_percentile": 90}, "max_tokens": 100})
    other_model = FilterConfig.model_validate({"perplexity": {"model": "/models/other"}})
    more_replicas = FilterConfig.model_validate({"perplexity": {"engine": {"replicas": 4}}})
    assert stricter.scoring_hash() == base.scoring_hash() != stricter.config_hash()
    assert other_model.scoring_hash() != base.scoring_hash()
    assert more_replicas.scoring_hash() == base.scoring_hash() and more_replicas.config_hash() == base.config_hash()


LIMITS = Thresholds(max_tokens=100, n=20, max_repeats=20, corpus_max_responses=5, max_ppl=30.0,
                    max_ppl_percentile=None)
CLEAN = {"structure": None, "sequence_tokens": 100, "max_ngram_count": 20, "ppl": 30.0, "reference_tokens": 90}


@pytest.mark.parametrize(
    "changes, boilerplate, expected",
    [
        pytest.param({}, 0, None, id="at-every-limit-kept"),
        pytest.param({"structure": "empty_think", "sequence_tokens": 500}, 0,
                     ("structure", "the canonical response does not parse: empty_think"), id="structure-first"),
        pytest.param({"sequence_tokens": 101, "max_ngram_count": 99}, 0,
                     ("too_long", "101 tokens > max_tokens 100"), id="too-long"),
        pytest.param({"max_ngram_count": 21}, 3,
                     ("ngram_repetition", "a 20-token n-gram occurs 21 times > max_repeats 20"), id="looping"),
        pytest.param({}, 3, ("corpus_boilerplate", "holds 3 20-token n-grams found in more than 5 responses"),
                     id="boilerplate"),
        pytest.param({"ppl": 30.5}, 0, ("perplexity", "ppl 30.5 > max_ppl 30"), id="perplexity"),
        pytest.param({"ppl": None, "reference_tokens": 9000}, 0,
                     ("perplexity", "not scored: 9000 tokens exceed the reference model's max_model_len"),
                     id="too-long-for-the-reference"),
        pytest.param({"ppl": None, "reference_tokens": None}, 0, None, id="perplexity-off"),
    ],
)
def test_the_first_failing_check_names_the_reason(changes, boilerplate, expected):
    assert decide({**CLEAN, **changes}, LIMITS, boilerplate) == expected


def test_a_percentile_threshold_says_so_in_the_detail():
    limits = Thresholds(100, 20, 20, None, 12.5, 95.0)
    assert decide({**CLEAN, "ppl": 13.0}, limits) == ("perplexity", "ppl 13 > max_ppl 12.5 (percentile 95)")


def test_the_summary_counts_every_reason_and_describes_the_kept():
    reasons = pa.array(["perplexity", "too_long", "perplexity"])
    summary = summarize(reasons, pa.array([10.0, 20.0, None]), pa.array([50, 70, 60]), LIMITS)
    assert summary["samples"] == 6 and summary["kept"] == 3
    assert summary["rejected"] == {"structure": 0, "too_long": 1, "ngram_repetition": 0, "corpus_boilerplate": 0,
                                   "perplexity": 2}
    assert summary["kept_ppl"] == {"mean": 15.0, "median": 15.0, "min": 10.0, "max": 20.0}
    assert summary["kept_response_tokens"]["mean"] == 60.0
    assert summarize(pa.array([], pa.string()), pa.array([], pa.float64()), pa.array([], pa.int64()),
                     LIMITS)["kept_ppl"] is None


def test_the_training_sequence_is_measured_as_training_tokenizes_it():
    tok = tokenizer()
    row = sample()
    measured = measure(row, tok, 20)
    assert measured["sequence_tokens"] == len(tokenize_conversation(tok, row["messages"])[0])
    assert measured["response_tokens"] == len(tok(format_response("2 and 2 make 4.", "4"),
                                                  add_special_tokens=False)["input_ids"])
    assert measured["structure"] is None and measured["max_ngram_count"] == 1


def test_a_looping_response_has_a_high_ngram_count():
    assert measure(sample(think="I add two and two. " * 60), tokenizer(), 20)["max_ngram_count"] > 20


@pytest.mark.parametrize(
    "row, failure",
    [
        pytest.param(sample(think=""), "empty_think", id="empty-reasoning"),
        pytest.param(sample(answer=" "), "empty_answer", id="empty-answer"),
        pytest.param(sample(last="4"), "last_turn_not_canonical", id="last-turn-differs"),
        pytest.param({**sample(), "messages": sample()["messages"][:1]}, "no_assistant_turn", id="no-assistant-turn"),
    ],
)
def test_the_structure_check_runs_on_the_canonical_turn(row, failure):
    assert measure(row, tokenizer(), 20)["structure"] == failure
