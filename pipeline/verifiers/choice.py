"""Multiple-choice answers (science, ARC-style): the chosen letter, extracted, must equal the reference letter."""

from __future__ import annotations

import re

from pipeline.loaders import last_boxed
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict

# Most explicit first: a boxed letter, "answer is (B)", "Answer: B", then a lone letter as the whole answer.
_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?\**([A-J])\b", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-J])[\).:]?\s*$"),
    re.compile(r"^\s*\(?([A-J])[\).:]\s"),
]


def is_choice_reference(query: Query) -> bool:
    answer = (query.reference or {}).get("answer", "")
    return isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in "ABCDEFGHIJ"


def extract_choice(answer: str) -> str | None:
    boxed = last_boxed(answer)
    if boxed is not None:
        letter = re.sub(r"\\text\{|[{}()\s.]", "", boxed)
        return letter.upper() if len(letter) == 1 and letter.isalpha() else None
    for pattern in _PATTERNS:
        matches = pattern.findall(answer)
        if matches:
            return matches[-1].upper()
    return None


class ChoiceVerifier:
    name = "choice/1"

    def verify(self, query: Query, answer: str) -> Verdict:
        gold = query.reference["answer"].strip().upper()
        chosen = extract_choice(answer)
        details = {"gold": gold, "extracted": chosen}
        if chosen is None:
            return Verdict(0.0, self.name, details, failure="no_answer_extracted")
        if chosen != gold:
            return Verdict(0.0, self.name, details, failure="wrong_answer")
        return Verdict(1.0, self.name, details)
