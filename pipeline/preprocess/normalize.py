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
