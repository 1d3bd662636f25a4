"""The threshold ablation: how many queries a teacher would have had accepted at another verify threshold, and after
how many generation rounds, read from the attempts log (`teachers/NAME/attempts/`) without generating again.

Semantics (the README's "Threshold ablation" says the same):
- A logged candidate *qualifies* at threshold T when its score is at least T and its `failure` is null (it passed the
  run's own threshold) or `below_threshold` (it was scored, only lower). Truncated and malformed candidates, failed
  requests and verifier errors never qualify, whatever their score.
- A turn is accepted at T in the first round (`attempt`) holding a qualifying candidate for that turn; of that round
  the best qualifying candidate is the answer (the lowest candidate index on a tie). A query is accepted at T when
  every one of its user turns is; its rounds are those of its last turn (rounds count across turns, as in the run).
- The run stopped generating for a turn once a candidate passed its own `accept_threshold`. At T above it, a query
  whose accepted answer scored below T would have been retried, and those rounds were never generated: the count is
  a lower bound (`exact` is false). The rounds of the queries it does count are exact.
- A multi-turn query's later turns were generated after the answer the run accepted for the turns before them. When
  T would have accepted an earlier turn in another round than the run did, the later turns would have been asked
  after a different conversation, so the query's outcome at T is only *approximate*: it is still judged on the
  logged rows, and counted apart (`approximate`). Such a query is never written as a sample.

Pure: Arrow tables in, plain values out. Must never import Ray or vLLM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.response_format import ResponseFormat, format_response, parse_response

DEFAULT_THRESHOLDS = (0.7, 0.8, 0.9, 1.0)
QUALIFYING_FAILURE = "below_threshold"  # the only failure that says "scored, but lower than the run's threshold"
ABLATION_COLUMNS = ["id", "attempt", "candidate", "turn", "score", "failure"]


@dataclass(frozen=True)
class Choice:
    """What a query would have become at T: the attempts-log row index of its answer to each user turn."""

    rounds: int  # the round that accepted the last turn
    rows: tuple[int, ...]  # per turn, the chosen row of the attempts table
    approximate: bool  # a multi-turn query whose earlier turns T would have accepted in other rounds than the run


@dataclass
class AblationResult:
    threshold: float
    exact: bool  # False: T is above the run's accept_threshold, so `accepted` is a lower bound
    choices: dict[str, Choice] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return len(self.choices)

    @property
    def approximate(self) -> int:
        return sum(c.approximate for c in self.choices.values())

    def rounds(self) -> Counter[int]:
        return Counter(c.rounds for c in self.choices.values())


def qualifying(attempts: pa.Table, threshold: float) -> pa.Array:
    """Which candidates of the attempts log qualify at `threshold` (a boolean mask, never null)."""
    failure = attempts.column("failure")
    scored = pc.or_(pc.is_null(failure), pc.fill_null(pc.equal(failure, QUALIFYING_FAILURE), False))
    return pc.fill_null(pc.and_(pc.greater_equal(attempts.column("score"), threshold), scored), False)


def ablate(
    attempts: pa.Table, user_turns: dict[str, int], threshold: float, run_threshold: float
) -> AblationResult:
    """The queries accepted at `threshold` and how (see the module docstring). `attempts` has at least
    ABLATION_COLUMNS; `user_turns` gives each query's number of user turns (a query missing from it needs the turns
    its rows show)."""
    result = AblationResult(threshold, exact=threshold <= run_threshold)
    first_round = _first_round_per_turn(attempts, qualifying(attempts, threshold))
    run_round = _first_round_per_turn(attempts, pc.is_null(attempts.column("failure")))
    best = _best_rows(attempts, qualifying(attempts, threshold), first_round)
    turns_seen = _max_turn(attempts)
    for query_id, rounds in first_round.items():
        needed = max(user_turns.get(query_id, 0), turns_seen[query_id] + 1)
        if any(turn not in rounds for turn in range(needed)):
            continue
        # Only turns followed by another shaped the conversation that later rows were generated in.
        approximate = any(rounds[t] != run_round.get(query_id, {}).get(t) for t in range(needed - 1))
        result.choices[query_id] = Choice(
            rounds=rounds[needed - 1],
            rows=tuple(best[(query_id, t)] for t in range(needed)),
            approximate=approximate,
        )
    return result


def _first_round_per_turn(attempts: pa.Table, mask: pa.Array) -> dict[str, dict[int, int]]:
    chosen = attempts.select(["id", "turn", "attempt"]).filter(mask)
    grouped = chosen.group_by(["id", "turn"]).aggregate([("attempt", "min")])
    rounds: dict[str, dict[int, int]] = {}
    for query_id, turn, attempt in zip(*(grouped.column(c).to_pylist() for c in ("id", "turn", "attempt_min"))):
        rounds.setdefault(query_id, {})[turn] = attempt
    return rounds


def _best_rows(
    attempts: pa.Table, mask: pa.Array, first_round: dict[str, dict[int, int]]
) -> dict[tuple[str, int], int]:
    """Per (query, turn): the row of the best qualifying candidate of the turn's first qualifying round."""
    best: dict[tuple[str, int], tuple[float, int, int]] = {}
    columns = (attempts.column(c).to_pylist() for c in ("id", "turn", "attempt", "candidate", "score"))
    for row, (keep, query_id, turn, attempt, candidate, score) in enumerate(zip(mask.to_pylist(), *columns)):
        if not keep or first_round[query_id][turn] != attempt:
            continue
        key = (-score, candidate, row)
        if (query_id, turn) not in best or key < best[(query_id, turn)]:
            best[(query_id, turn)] = key
    return {k: v[2] for k, v in best.items()}


def _max_turn(attempts: pa.Table) -> dict[str, int]:
    grouped = attempts.select(["id", "turn"]).group_by("id").aggregate([("turn", "max")])
    return dict(zip(grouped.column("id").to_pylist(), grouped.column("turn_max").to_pylist()))


# ---- the dataset at a threshold ------------------------------------------------------------------------------------


@dataclass
class ThresholdDataset:
    rows: list[dict[str, Any]]  # SAMPLE_SCHEMA rows
    not_written: dict[str, int]  # why accepted queries are not rows: `multi_turn_history`, parse failure codes


def threshold_samples(
    result: AblationResult, attempts: pa.Table, queries: dict[str, dict[str, Any]], teacher: str,
    response_format: ResponseFormat,
) -> ThresholdDataset:
    """The samples a run at `result.threshold` would have kept, as SAMPLE_SCHEMA rows built as the run builds them
    (`pipeline.regenerate`): the query's turns, each user turn followed by its answer in the canonical format.
    `attempts` must hold `text` (the candidate as generated); `queries` maps ids to QUERY_SCHEMA rows."""
    dataset = ThresholdDataset([], Counter())
    exact = sorted((query_id, choice) for query_id, choice in result.choices.items() if not choice.approximate)
    if len(exact) < result.accepted:
        dataset.not_written["multi_turn_history"] = result.accepted - len(exact)
    # Only the chosen rows are materialized: the log holds every candidate's text.
    wanted = sorted({row for _, choice in exact for row in choice.rows})
    logged = dict(zip(wanted, attempts.take(pa.array(wanted, pa.int64())).to_pylist()))
    for query_id, choice in exact:
        chosen = [logged[row] for row in choice.rows]
        parsed = [parse_response(row["text"] or "", response_format) for row in chosen]
        failure = next((p.failure for p in parsed if not p.ok), None)
        if failure is not None:  # a verifier let through what the run's parser cannot split: counted, not written
            dataset.not_written[f"unparseable_{failure}"] += 1
            continue
        query = queries[query_id]
        answers = iter(format_response(p.think, p.answer) for p in parsed)
        messages = []
        for message in query["messages"]:
            if message["role"] == "system":
                continue
            messages.append(message)
            if message["role"] == "user":
                messages.append({"role": "assistant", "content": next(answers)})
        last = chosen[-1]
        dataset.rows.append({
            "id": query_id, "category": query["category"], "teacher": teacher, "messages": messages,
            "think": parsed[-1].think, "answer": parsed[-1].answer,
            "verify_score": min(row["score"] for row in chosen), "verifier": last["verifier"],
            "verify_details": last["verify_details"], "attempts": choice.rounds,
            "prompt_tokens": sum(row["prompt_tokens"] for row in chosen),
            "completion_tokens": sum(row["completion_tokens"] for row in chosen),
            "finish_reason": last["finish_reason"], "source": query["source"], "config_hash": last["config_hash"],
        })
    dataset.not_written = dict(dataset.not_written)
    return dataset
