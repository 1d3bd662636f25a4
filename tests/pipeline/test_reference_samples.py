"""GSM8K and MATH reference solutions become accepted samples in the paper's format."""

import asyncio
import json

import pytest
from pydantic import ValidationError

from pipeline.config import JudgeConfig, TeacherConfig, VerifierConfig
from pipeline.loaders import parse_json_line
from pipeline.reference_samples import ReferenceEngine, reference_sample, reference_samples
from pipeline.regenerate import distill_query
from pipeline.response_format import parse_response
from pipeline.verifiers.dispatch import ResponseVerifier
from pipeline.verifiers.routes import Available, route

GSM8K = {"question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
         "answer": "In May she sold 48/2 = <<48/2=24>>24.\nIn total 48+24 = <<48+24=72>>72.\n#### 1,072"}
MATH = {"problem": "What is $1+1$?", "solution": "We add: $1+1=\\boxed{2}$."}


def test_a_gsm8k_row_loses_its_calculator_notes_and_keeps_its_final_answer():
    sample = reference_sample(GSM8K, "gsm8k-1", "gsm8k")
    user, assistant = sample.messages
    assert user.content == GSM8K["question"]
    assert sample.think == "In May she sold 48/2 = 24.\nIn total 48+24 = 72." and sample.answer == "1072"
    parsed = parse_response(assistant.content)
    assert parsed.ok and (parsed.think, parsed.answer) == (sample.think, sample.answer)


def test_a_math_row_answers_with_its_last_boxed_expression():
    sample = reference_sample(MATH, "math-1", "math")
    assert sample.answer == "2" and sample.think == MATH["solution"]


def test_rows_of_other_shapes_are_skipped_and_ids_follow_line_numbers():
    lines = [json.dumps(GSM8K), json.dumps({"prompt": "hi"}), "", json.dumps(MATH)]
    assert [s.id for s in reference_samples(lines, "mixed")] == ["mixed-1", "mixed-4"]


def test_lines_that_are_not_json_objects_are_skipped_like_other_shapes():
    lines = [b"\xff\xfe not utf-8", "not json", "[1, 2]", "3", json.dumps(MATH).encode()]
    assert [s.id for s in reference_samples(lines, "odd")] == ["odd-5"]


# ---- the reference teacher: a distillation teacher that answers with the dataset's solutions ------------------------


def reference_teacher(tmp_path, rows) -> TeacherConfig:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return TeacherConfig.model_validate({"name": "reference", "model": "reference", "max_attempts": 1,
                                         "engine": {"kind": "reference", "paths": [str(path)]}})


def distilled(teacher, queries_text):
    """Each query of `queries_text` (JSONL lines, as the loaders read them) through the real regenerate loop, with
    the reference engine and the real program verifiers."""
    engine, checker = ReferenceEngine(teacher), ResponseVerifier(VerifierConfig(code=False))

    async def verify(query, response):
        return checker.verify(query, response, teacher.response_format, route(query, Available(False, False)).route)

    queries = [parse_json_line(line.encode(), "train") for line in queries_text]
    return [asyncio.run(distill_query(q, teacher, engine.generate, verify, "hash")) for q in queries]


def test_a_reference_teacher_answers_each_query_with_its_rows_solution_and_the_verifier_accepts_it(tmp_path):
    teacher = reference_teacher(tmp_path, [GSM8K, MATH])
    gsm8k, math = distilled(teacher, [json.dumps(GSM8K), json.dumps(MATH)])
    for outcome, row in ((gsm8k, GSM8K), (math, MATH)):
        assert outcome.sample is not None, outcome.reject
        assert outcome.sample.messages[-1].content == reference_sample(row, "x", "x").messages[-1].content
        assert outcome.sample.verify_score == 1.0 and outcome.sample.completion_tokens == 0
    assert gsm8k.sample.answer == "1072" and math.sample.answer == "2"


def test_a_query_no_reference_file_holds_is_rejected_as_such_without_retrying(tmp_path):
    teacher = reference_teacher(tmp_path, [GSM8K])
    other = {"question": "Tom has 3 apples and eats 1. How many are left?", "answer": "3 - 1 = 2\n#### 2"}
    [outcome] = distilled(teacher, [json.dumps(other)])
    assert outcome.sample is None and outcome.reject.reason == "no_reference"
    assert [a.failure for a in outcome.attempts] == ["no_reference"]


def test_a_reference_file_without_solutions_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="engine.paths: no GSM8K or MATH solution"):
        ReferenceEngine(reference_teacher(tmp_path, [{"prompt": "hi"}]))


def test_only_a_teacher_may_answer_from_references():
    with pytest.raises(ValidationError, match="reference"):
        JudgeConfig.model_validate({"model": "judge", "engine": {"kind": "reference", "paths": ["train.jsonl"]}})
