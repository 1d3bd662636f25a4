"""Reference solutions of public math datasets as accepted samples, in the paper's format: a real, verified dataset
for training demos, tests and benchmarks when no teacher has been distilled yet.

GSM8K (`question`, `answer` ending in `#### N`, with `<<a=b>>` calculator notes) and MATH (`problem`, `solution` with a
final `\\boxed{}`) rows become one user turn and one assistant turn `<think>…</think><answer>…</answer>`.
This module must never import Ray.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pipeline.loaders import gsm8k_solution, last_boxed
from pipeline.response_format import format_response
from pipeline.schema import Category, Message, Sample

TEACHER = "reference"
_CALCULATOR_NOTE = re.compile(r"<<[^>]*>>")


def reference_sample(row: dict[str, Any], sample_id: str, source: str) -> Sample | None:
    """The row's reference solution as a sample; None for a row of another shape or without a final answer."""
    if "question" in row and "####" in str(row.get("answer", "")):
        prompt = row["question"]
        reasoning, answer = gsm8k_solution(row["answer"])
        think = _CALCULATOR_NOTE.sub("", reasoning).strip()
    elif "problem" in row and last_boxed(row.get("solution", "")):
        prompt, think, answer = row["problem"], row["solution"].strip(), last_boxed(row["solution"])
    else:
        return None
    return Sample(
        id=sample_id, category=Category.math, teacher=TEACHER,
        messages=[Message(role="user", content=prompt),
                  Message(role="assistant", content=format_response(think, answer))],
        think=think, answer=answer, verify_score=1.0, verifier=TEACHER, verify_details=json.dumps({}), attempts=0,
        prompt_tokens=0, completion_tokens=0, finish_reason="stop", source=source, config_hash=TEACHER,
    )


def reference_samples(lines: Iterable[str | bytes], source: str) -> Iterator[Sample]:
    """Samples from the JSONL lines of a GSM8K or MATH file; ids are `SOURCE-LINE` (1-based). A line that is not a
    JSON object is skipped like a row of another shape: a file with no sample at all is one this does not read."""
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            continue
        if isinstance(row, dict) and (sample := reference_sample(row, f"{source}-{number}", source)) is not None:
            yield sample
