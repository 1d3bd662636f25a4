"""Reference solutions of public math datasets as accepted samples, in the paper's format: a real, verified dataset
for training demos, tests and benchmarks when no teacher has been distilled yet; and as a teacher (`ReferenceEngine`,
`engine: {kind: reference}`), so that a distillation run compares its teachers with the dataset's own solutions over
the same queries.

GSM8K (`question`, `answer` ending in `#### N`, with `<<a=b>>` calculator notes) and MATH (`problem`, `solution` with a
final `\\boxed{}`) rows become one user turn and one assistant turn `<think>…</think><answer>…</answer>`.
This module must never import Ray.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pipeline.engine import Candidate, RequestFailed
from pipeline.loaders import gsm8k_solution, last_boxed
from pipeline.response_format import format_response
from pipeline.schema import Category, Message, Sample
from pipeline.storage import filesystem

if TYPE_CHECKING:
    from pipeline.config import SamplingConfig, TeacherConfig

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


NO_REFERENCE = "no_reference"  # a query whose question no reference file holds


class ReferenceEngine:
    """The engine interface (`pipeline.engine`) over reference files: a conversation's last user turn is looked up by
    its text (as the loaders keep it) and answered with that row's solution, once per request whatever `n` is (there
    is one solution). Every file's solutions are held in memory: reference files are datasets of thousands of rows,
    not corpora."""

    def __init__(self, teacher: TeacherConfig, storage_options: dict[str, Any] | None = None):
        self._solutions: dict[str, str] = {}
        for path in teacher.engine.paths:
            fs, local = filesystem(path, storage_options)
            with fs.open(local, "rb") as f:
                for sample in reference_samples(f, path):
                    self._solutions.setdefault(sample.messages[0].content.strip(), sample.messages[1].content)
        if not self._solutions:
            raise ValueError(f"engine.paths: no GSM8K or MATH solution in {', '.join(teacher.engine.paths)}")

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]:
        question = next(m.content for m in reversed(messages) if m.role == "user").strip()
        solution = self._solutions.get(question)
        if solution is None:
            raise RequestFailed(NO_REFERENCE, "no reference file holds this question")
        return [Candidate(solution, "stop", prompt_tokens=0, completion_tokens=0)]

    def shutdown(self) -> None:
        pass
