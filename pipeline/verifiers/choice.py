"""Multiple-choice answers (science, ARC-style): the label the answer commits to must equal the reference label.

Labels are letters A–J or, as in a few ARC questions, digits 1–9. The answer commits to a label by, in this order:
1. boxing it: `\\boxed{D}`, `\\boxed{\\text{D}}`, `\\boxed{(D) text}`. Boxes that name different labels are a hedge.
2. stating it: "The correct option is D: …", "The answer is (D)", "Answer: **D.**", "the answer is D." after an
   explanation. When it is stated more than once, the last statement is the answer (a correction).
3. leading a line with it: "D", "(D)", "**D.**", "Option D", "D. <the option's text>", "D) <text>", "D is
   correct". Lines that lead with different labels (a list of the options) commit to nothing.
The committed label is void when the same statement offers another ("A or B", "either B or C", "B and C", "B/C") or
when a later sentence keeps another open ("The answer is A. Actually, it could also be B"): those are hedges, and a
hedge is no answer. A capital letter in prose is never read as a label ("I think A is wrong", "Let X be ...").
"""

from __future__ import annotations

import re

from pipeline.loaders import all_boxed
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict

_LABELS = set("ABCDEFGHIJ123456789")
# A label standing alone: not part of a word or a number ("A1", "3.5", "12"), and not the pronoun ("I think", "I'm").
_LABEL = r"(?<![A-Za-z0-9])(?!I(?:\s+[a-z]|['’]))([A-J1-9])(?![A-Za-z0-9]|[.,]\d)"
_DECORATION = r"[\s*_(\[]*"  # markdown emphasis and brackets around a label
_STATEMENT = re.compile(
    r"(?i:\b(?:answer|option|choice)\s*(?:is|would be|should be|must be|:|=)\s*(?:[:\-]\s*)?"
    r"(?:either\s+)?(?:option\s+|choice\s+|letter\s+)?)" + _DECORATION + r"(?i:" + _LABEL + ")"
)
_LEADING = re.compile(
    r"^[ \t]*[*_(\[]*(?i:(?:option|choice|answer:?)[ \t]+)?[*_(\[]*([A-J1-9])"
    r"(?:[ \t*_)\].:]*$|[*_]*(?:[).:]|[ \t]+[-–—][ \t])|[ \t]+is[ \t]+(?:the[ \t]+)?(?:correct|right|best|answer))",
    re.MULTILINE,
)
# Another label offered next to the committed one, or left open after it.
_ALTERNATIVE = re.compile(r"[\s*_)\].]*(?:,|/|&|\bor\b|\band\b)" + _DECORATION + r"(?i:option\s+|choice\s+)?" + _LABEL)
_LEFT_OPEN = re.compile(
    r"(?i:\b(?:could|might|may|can)\s+(?:also\s+|just\s+as\s+well\s+)?be\s+(?:option\s+|choice\s+)?"
    r"|\b(?:or\s+)?(?:maybe|perhaps|possibly|alternatively),?\s+(?:option\s+|choice\s+)?)" + _DECORATION + _LABEL
)


def is_choice_reference(query: Query) -> bool:
    answer = (query.reference or {}).get("answer", "")
    return isinstance(answer, str) and answer.strip().upper() in _LABELS


def _boxed_label(box: str) -> str | None:
    """The label a box holds: `D`, `\\text{D}`, `(D)`, `D. <text>`; None for anything else ("B or C", "B, C")."""
    content = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", box).strip()
    match = re.fullmatch(r"[(\[]?([A-Ja-j1-9])(?:[)\]]|[.:)]?\s+\S.*|[.:])?", content, re.DOTALL)
    if match is None or _ALTERNATIVE.match(content, match.end(1)):
        return None
    return match.group(1).upper()


def _ends_sentence(text: str, position: int) -> bool:
    return re.match(r"[\s*_)\]]*(?:[.!;:,]|$)", text[position:]) is not None


def _committed(answer: str) -> tuple[str, int] | None:
    """The committed label and where its commitment ends; None when there is none, or several."""
    boxes = all_boxed(answer)
    if boxes:
        labels = {_boxed_label(box) for box in boxes}
        return (labels.pop(), answer.rindex("\\boxed")) if len(labels) == 1 and None not in labels else None
    # A lower-case label ("Answer: a") counts only where nothing follows it in its sentence: "the answer is a bit".
    statements = [m for m in _STATEMENT.finditer(answer) if not m.group(1).islower() or _ends_sentence(answer, m.end())]
    if statements:
        return statements[-1].group(1).upper(), statements[-1].end()
    leading = list(_LEADING.finditer(answer))
    labels = {m.group(1) for m in leading}
    return (labels.pop(), leading[-1].end()) if len(labels) == 1 else None


def extract_choice(answer: str) -> str | None:
    """The label the answer commits to, upper-cased; None when it names none or hedges between several."""
    committed = _committed(answer)
    if committed is None:
        return None
    label, end = committed
    offered = _ALTERNATIVE.match(answer, end)
    if offered is not None and offered.group(1).upper() != label:
        return None
    if any(m.group(1).upper() != label for m in _LEFT_OPEN.finditer(answer, end)):
        return None
    return label


class ChoiceVerifier:
    name = "choice/2"

    def verify(self, query: Query, answer: str) -> Verdict:
        gold = query.reference["answer"].strip().upper()
        chosen = extract_choice(answer)
        details = {"gold": gold, "extracted": chosen}
        if chosen is None:
            return Verdict(0.0, self.name, details, failure="no_answer_extracted")
        if chosen != gold:
            return Verdict(0.0, self.name, details, failure="wrong_answer")
        return Verdict(1.0, self.name, details)
