"""Multiple-choice answers (science, ARC-style): the chosen label, extracted, must equal the reference label.

Labels are letters A–J or, as in a few ARC questions, digits 1–9.
"""

from __future__ import annotations

import re

from pipeline.loaders import last_boxed
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict

# Most explicit first: a boxed letter, "answer is (B)", "Answer: B", then a lone letter as the whole answer.
_LABEL = r"([A-J1-9])"
_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?\**" + _LABEL + r"\b", re.IGNORECASE),
    re.compile(r"^\s*\(?" + _LABEL + r"[\).:]?\s*$", re.IGNORECASE),
    re.compile(r"^\s*\(?" + _LABEL + r"[\).:]\s", re.IGNORECASE),
]
_LABELS = set("ABCDEFGHIJ123456789")


def is_choice_reference(query: Query) -> bool:
    answer = (query.reference or {}).get("answer", "")
    return isinstance(answer, str) and answer.strip().upper() in _LABELS


def extract_choice(answer: str) -> str | None:
    boxed = last_boxed(answer)
    if boxed is not None:
        label = re.sub(r"\\text\{|[{}()\s.]", "", boxed).upper()
        return label if label in _LABELS else None
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
