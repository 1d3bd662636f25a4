"""Text normalization for matching queries against each other and against benchmarks.

Normalized text is only ever used to compare and filter; the query that is kept keeps its original text. Two levels:
`normalize` (what filters and embeddings see) and `match_key` (what exact matching compares, insensitive to case and
to formatting that does not change what a problem says). Must never import Ray.
"""

from __future__ import annotations

import re
import unicodedata

import regex

_WHITESPACE = re.compile(r"\s+")
# Control and format characters (zero-width spaces, BOMs, bidi marks) carry no text. Tabs and newlines are control
# characters too, but whitespace, which folding turns into single spaces. (`regex` knows Unicode categories; `re` not.)
_INVISIBLE = regex.compile(r"[[\p{Cc}\p{Cf}]--\s]", flags=regex.V1)
# LaTeX that changes spacing or sizing but not meaning; `\dfrac` and `\tfrac` are `\frac` at another size.
_LATEX_LAYOUT = re.compile(r"(?<!\\)\\(?:[,;:! ]|quad\b|qquad\b|left\b|right\b|displaystyle\b)")
_LATEX_FRAC = re.compile(r"\\[dt]frac\b")
# Space next to a symbol never changes what a problem says: `\frac {1} {2}` is `\frac{1}{2}`, `x + y` is `x+y`.
_SPACE_AT_SYMBOL = re.compile(r"\s*([^\w\s])\s*")
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, whitespace runs folded to one space, ends stripped."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return _WHITESPACE.sub(" ", text).strip()


def match_key(normalized: str) -> str:
    """The exact-match form of normalized text: casefolded, LaTeX layout commands and spacing at symbols removed."""
    text = _LATEX_FRAC.sub(r"\\frac", _LATEX_LAYOUT.sub(" ", normalized.casefold()))
    return _SPACE_AT_SYMBOL.sub(r"\1", _WHITESPACE.sub(" ", text)).strip()


def words(key: str) -> list[str]:
    """The word tokens of a match key: symbols and LaTeX markup separate words and are dropped."""
    return _WORD.findall(key)


# ---- the near-duplicate form: numbers in one spelling, and the multiset of numbers a text states -----------------

_UNITS = {
    word: value for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {
    word: 10 * value for value, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = frozenset([*_UNITS, *_TENS, *_SCALES])
# Words and numbers of the near form. A number keeps its thousands separators and decimals, to be rewritten as one
# canonical string; letters and digits are separate tokens ("3x" is "3 x"); everything else separates tokens. (Each
# branch starts with a character class and nothing backtracks, so `re` skips the text between tokens quickly: words
# first, the lookbehind of ".5" after its dot, possessive repeats.)
_NEAR_TOKEN = re.compile(r"[^\W\d]++|\d++(?:,\d{3})*+(?:\.\d+)?+|\.(?<![\w.]\.)\d++")
# Only a number with a separator or a leading dot is rewritten; a text without one skips that pass.
_SEPARATED_NUMBER = re.compile(r"[,.]\d")


def _canonical_number(token: str) -> str:
    """"1,000" → "1000", "5.50" → "5.5", "7.0" → "7", ".5" → "0.5", ".0" → "0"."""
    token = token.replace(",", "")
    if "." in token:
        token = token.rstrip("0").rstrip(".") or "0"  # ".0"
        if token.startswith("."):
            token = "0" + token
    return token


def _spelled_value(run: list[str]) -> list[str]:
    """Digits for a run of number words: "twenty five" → "25", "one hundred and five" → "105"; a run that is
    several numbers stays several: "two three" → "2 3", "three and four" → "3 and 4"."""
    parts: list[str] = []
    total = current = 0
    previous = ""  # the kind of the previous word: "unit" (0-19), "tens", "scale" or "and"
    for word in run:
        if word == "and":
            if previous != "scale":  # "and" only joins "one hundred and five"
                parts += [str(total + current), "and"]
                total = current = 0
                previous = ""
            else:
                previous = "and"
            continue
        if word in _SCALES:
            scale = _SCALES[word]
            # "two hundred", "5 hundred thousand"
            if previous in ("unit", "tens", "digits", "scale") and 0 < current < scale:
                total, current = (total, current * scale) if scale == 100 else (total + current * scale, 0)
            else:  # "hundred" alone, or a scale that cannot follow ("hundred hundred")
                if previous:
                    parts.append(str(total + current))
                total, current = 0, scale
            previous = "scale"
            continue
        if word.isdecimal():
            kind, value = "digits", int(word)
        else:
            kind, value = ("tens", _TENS[word]) if word in _TENS else ("unit", _UNITS[word])
        continues = (previous == "tens" and kind == "unit" and 0 < value < 10) or (
            previous in ("scale", "and") and value < 100 and current % 100 == 0
        )
        if previous and not continues:
            parts.append(str(total + current))
            total = current = 0
        current += value
        previous = kind
    parts.append(str(total + current))
    return parts


def near_form(normalized: str) -> tuple[str, tuple[str, ...]]:
    """What near-duplicate detection compares, from normalized text: its words and numbers, casefolded, without
    LaTeX layout or punctuation, numbers written one way (digits, without thousands separators or trailing decimal
    zeros), and the sorted numbers it states. "Five peach pies" and "5 peach pies." have one form; "6 peach pies"
    states other numbers, so it is another problem, however alike. (Not from the match key, whose spaces at symbols
    are gone: "2. 5" is two numbers.)"""
    text = normalized.casefold()
    if "\\" in text:
        text = _LATEX_FRAC.sub(r"\\frac", _LATEX_LAYOUT.sub(" ", text))
    tokens = _NEAR_TOKEN.findall(text)
    if _SEPARATED_NUMBER.search(text):
        tokens = [_canonical_number(token) if token[0] in "0123456789." else token for token in tokens]
    if not _NUMBER_WORDS.isdisjoint(tokens):
        tokens = _digits_for_words(tokens)
    return " ".join(tokens), tuple(sorted(token for token in tokens if token[0] in "0123456789"))


def _digits_for_words(tokens: list[str]) -> list[str]:
    """Runs of number words as digits; an integer before a scale word belongs to the run ("10 million"). (Decimal
    digits only: "፩" is a digit to `str.isdigit` but not to `int`.)"""
    out: list[str] = []
    run: list[str] = []
    for i, token in enumerate([*tokens, ""]):
        if token in _NUMBER_WORDS or (run and token == "and") or (
            token.isdecimal() and i + 1 < len(tokens) and tokens[i + 1] in _SCALES
        ):
            run.append(token)
            continue
        if run:
            trailing = 0
            while run[-1] == "and":  # "and" joins a number only inside it
                run.pop()
                trailing += 1
            out += _spelled_value(run) + ["and"] * trailing
            run = []
        if token:
            out.append(token)
    return out
