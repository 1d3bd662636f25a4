"""Math answers checked with Math-Verify against the gold answer, in a warm child process with a hard time limit.

Only the final answer counts, and a response must commit to one:
- With `\\boxed{}`: the boxed value. Every box must hold a correct answer (the last is checked first): boxes that
  disagree are a hedge (`hedged_answer`) even when one of them is right, since nothing tells an intermediate result
  from an alternative.
- Without a box, bare math (no words but "or" and "and": `16 or 17 or 18`, `1, 2, 3`, `x = 3 or x = 4`,
  `\\dfrac{1}{2}`) is read whole, as if boxed: alternatives and lists become one set, which matches only a gold that
  is that set. Prose goes to Math-Verify, which reads an "answer is" phrase, else the last expression (and joins
  `$a$ or $b$` into a set); prose that offers alternatives ("16 or 17") is a hedge; prose in which Math-Verify
  finds nothing is read whole.
Inside a box, "3 or 4" and "3, 4" are sets too, so no single gold matches them. A verdict's failure is one of
`no_answer_extracted`, `wrong_answer`, `hedged_answer`, `gold_unparsed` (the reference), `verifier_timeout` and
`verifier_crashed`; a child that cannot start raises (a broken verifier, not a bad answer).

The child parses LaTeX faster, with the same results (`_speed_up_latex2sympy`), and is warmed up on typical answers
before it takes work (`prepare_child`); the parent never imports Math-Verify.
"""

from __future__ import annotations

import re
from importlib.metadata import version

from pipeline.loaders import all_boxed
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.killable import CallTimedOut, ChildCrashed, KillableWorker

_PREVIEW = 200
# A word of prose: two or more letters that are not a LaTeX command; "or" and "and" join values in bare math.
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])(?!(?:or|and)(?![A-Za-z]))[A-Za-z]{2,}")
_MATH_DELIMITERS = re.compile(r"\$|\\\(|\\\[")
# A value, "or", another value: "16 or 17", "3, or x = 4", "$3$ or $4$".
_ALTERNATIVES = re.compile(r"[\d$}]\s*,?\s*\bor\s+(?:[A-Za-z]\s*=\s*)?[-+$\\\d]")

# Answers of the shapes MATH asks for, each with an equal gold. Parsing them in a new child fills ANTLR's prediction
# cache: a cold child checks about half as many answers per second. They double as a self-test of the child.
_WARM_UP = [
    ("42", "The answer is $\\boxed{42}$."),
    ("\\frac{1}{2}", "\\boxed{0.5}"),
    ("\\dfrac{3\\sqrt{2}}{4}", "\\boxed{\\frac{3\\sqrt2}{4}}"),
    ("-\\frac{7}{3}", "\\boxed{-7/3}"),
    ("2\\pi", "\\boxed{2\\pi}"),
    ("\\sqrt[3]{2}", "\\boxed{2^{1/3}}"),
    ("1024", "\\boxed{2^{10}}"),
    ("(1,-2)", "\\boxed{(1, -2)}"),
    ("[0,\\infty)", "\\boxed{[0, \\infty)}"),
    ("(-\\infty, -3) \\cup (2, 5]", "\\boxed{(-\\infty,-3)\\cup(2,5]}"),
    ("\\{1, 2, 3\\}", "\\boxed{3, 2, 1}"),
    ("x^2 + 2x + 1", "\\boxed{(x+1)^2}"),
    ("y = 2x + 3", "\\boxed{y=2x+3}"),
    ("3", "\\boxed{x = 3}"),
    ("\\text{(C)}", "\\boxed{C}"),
    ("10\\%", "\\boxed{10\\%}"),
    ("30^\\circ", "\\boxed{30^{\\circ}}"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}1\\\\-2\\end{pmatrix}}"),
    ("\\log_2 8", "\\boxed{3}"),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\sin \\frac{\\pi}{3}}"),
    ("12\\sqrt{3} - 4i", "\\boxed{-4i + 12\\sqrt3}"),
    ("1{,}000", "\\boxed{1000}"),
    ("\\text{Monday}", "\\boxed{\\text{Monday}}"),
    ("\\pm 2", "\\boxed{\\pm2}"),
    ("x \\in [-2, 7]", "\\boxed{[-2,7]}"),
    ("2.5 \\times 10^{3}", "\\boxed{2500}"),
    ("\\frac{a+b}{2}", "\\boxed{\\frac{b+a}{2}}"),
    ("|x - 1|", "\\boxed{\\left| x-1 \\right|}"),
    ("\\left( \\frac{1}{2}, \\frac{3}{2} \\right)", "\\boxed{(0.5, 1.5)}"),
    ("5!", "\\boxed{120}"),
    ("\\binom{6}{2}", "\\boxed{15}"),
    ("e^{2x}", "\\boxed{(e^x)^2}"),
    ("\\ln 2", "\\boxed{\\ln(2)}"),
    ("2 + 3i", "\\boxed{3i+2}"),
    ("(1, 2, 3)", "\\boxed{(1,2,3)}"),
    ("3\\frac{1}{4}", "\\boxed{\\frac{13}{4}}"),
    ("10101_2", "\\boxed{10101_2}"),
    ("\\frac{x^2-1}{x+1}", "\\boxed{\\frac{x^2-1}{x+1}}"),
    ("a \\cdot b", "\\boxed{ab}"),
    ("x > 3", "\\boxed{x>3}"),
    ("f(x) = x^2", "\\boxed{f(x)=x^2}"),
    ("\\$18.90", "\\boxed{18.90}"),
    ("\\cos^2 \\theta", "\\boxed{\\cos^{2}\\theta}"),
    ("5", "x = 5"),
    ("18", "She makes 18 dollars."),
    ("\\frac{1}{2}", "\\dfrac{1}{2}"),
]


# ---- in the child ---------------------------------------------------------------------------------------------


def _speed_up_latex2sympy() -> None:
    """Two shortcuts in latex2sympy, which Math-Verify parses with. Neither changes a result (no parse differed on
    16,000 MATH answers and solution endings), and together they make parsing 2 to 3 times as fast.

    - ANTLR's two-stage parsing: SLL prediction first, full LL only when SLL reports a syntax error. ANTLR guarantees
      that an SLL parse without error is the tree LL would build.
    - A number of ASCII digits becomes `sympy.Integer` directly; `sympy.Number(text)` gives the same Integer through
      sympy's expression parser, which took a third of all the time.
    """
    import sympy
    from antlr4.atn.PredictionMode import PredictionMode
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    create_ll_parser, parse_number = _Latex2Sympy.create_parser, _Latex2Sympy.parse_number

    def create_parser(self, latex_str):
        parser = create_ll_parser(self, latex_str)
        parser._interp.predictionMode = PredictionMode.SLL
        parse_sll = parser.math

        def math():
            try:
                return parse_sll()
            except Exception:  # noqa: BLE001 - syntax errors raise plain Exception; Math-Verify's timeout passes
                return create_ll_parser(self, latex_str).math()

        parser.math = math
        return parser

    def parse_digits(self, text):
        digits = text.replace(",", "")  # as parse_number does, which also drops leading zeros: int() does too
        return sympy.Integer(digits) if digits.isascii() and digits.isdigit() else parse_number(self, text)

    _Latex2Sympy.create_parser = create_parser
    _Latex2Sympy.parse_number = parse_digits


def prepare_child() -> None:
    """The child's warm-up, before it says it is ready: faster parsing, then the typical answers, which must all
    verify (a child that gets them wrong is broken)."""
    _speed_up_latex2sympy()
    wrong = [pair for pair in _WARM_UP if check_answer(*pair)["failure"] is not None]
    if wrong:
        raise RuntimeError(f"Math-Verify rejects these correct answers: {wrong}")


def _distinct_boxes(answer: str) -> list[str]:
    """Each different boxed answer, the last first."""
    return [f"\\boxed{{{box}}}" for box in dict.fromkeys(box.strip() for box in reversed(all_boxed(answer)))]


def _is_bare_math(answer: str) -> bool:
    return not _MATH_DELIMITERS.search(answer) and not _PROSE_WORD.search(answer)


def _matched_text(parsed: list) -> str | None:
    """The text Math-Verify matched (its parse gives [value, matched text]); printing the value itself can take
    longer than the check."""
    return next((item[:_PREVIEW] for item in reversed(parsed) if isinstance(item, str)), None)


def check_answer(gold: str, answer: str) -> dict:
    """Runs in the child: the gold and the answer's final value, parsed and compared gold first (Math-Verify is not
    symmetric). Returns the matched texts and the failure, None when the answer is right."""
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}")
    result = {"gold": _matched_text(gold_parsed), "extracted": None, "failure": None}
    if not gold_parsed:
        return result | {"failure": "gold_unparsed"}
    boxes, offers_alternatives = _distinct_boxes(answer), False
    if boxes:
        final = parse(boxes[0])
    elif _is_bare_math(answer):
        final = parse(f"${answer.replace('**', '').strip()}$")  # markdown bold aside
    else:
        final = parse(answer) or parse(f"${answer}$")  # prose in which Math-Verify finds nothing ("Monday")
        offers_alternatives = _ALTERNATIVES.search(answer) is not None
    result["extracted"] = _matched_text(final)
    if not final:
        return result | {"failure": "no_answer_extracted"}
    if not verify(gold_parsed, final):
        return result | {"failure": "wrong_answer"}
    if offers_alternatives or not all(verify(gold_parsed, parse(box)) for box in boxes[1:]):
        return result | {"failure": "hedged_answer"}
    return result


# ---- in the caller --------------------------------------------------------------------------------------------


class MathVerifier:
    name = f"math-verify/{version('math-verify')}"

    def __init__(self, timeout_s: float = 10.0, start_timeout_s: float = 120.0):
        """`timeout_s` limits each answer's check; `start_timeout_s` limits the child's start-up and warm-up, which
        begin now."""
        self._worker = KillableWorker(
            "pipeline.verifiers.math:check_answer",
            timeout_s,
            warm_up="pipeline.verifiers.math:prepare_child",
            start_timeout_s=start_timeout_s,
        )

    def verify(self, query: Query, answer: str) -> Verdict:
        gold = query.reference["answer"] if query.reference else ""
        try:
            result = self._worker.call(gold, answer)
        except CallTimedOut as err:
            return Verdict(0.0, self.name, {"error": str(err)}, failure="verifier_timeout")
        except ChildCrashed as err:
            return Verdict(0.0, self.name, {"error": str(err)}, failure="verifier_crashed")
        failure = result.pop("failure")
        return Verdict(0.0 if failure else 1.0, self.name, result, failure=failure)

    def close(self) -> None:
        self._worker.close()
