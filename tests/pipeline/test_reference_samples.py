"""GSM8K and MATH reference solutions become accepted samples in the paper's format."""

import json

from pipeline.reference_samples import reference_sample, reference_samples
from pipeline.response_format import parse_response

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
