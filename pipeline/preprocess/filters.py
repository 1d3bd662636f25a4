"""Query filters: which queries are not worth distilling, and why.

Each filter only decides: it returns None to keep a query, or a short detail when it drops one. `first_failure` runs
them in order and names the first failure with its stable reason code; counting and writing rejects belong to the
stage that calls it. Defaults were tuned to reject no legitimate math or code in the shared query corpus (LaTeX, `$`
amounts, `|x|`, code with braces and pipes); see README, "Preprocessing queries". Must never import Ray.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import regex

from pipeline.config import QueryFilterConfig


@dataclass(frozen=True)
class QueryText:
    original: str  # the user turns as written, joined by newlines
    normalized: str  # `normalize(original)`
    category: str


Filter = Callable[[QueryText, QueryFilterConfig], "str | None"]


def _empty(text: QueryText, config: QueryFilterConfig) -> str | None:
    return None if text.normalized else "no visible text"


def _too_short(text: QueryText, config: QueryFilterConfig) -> str | None:
    size = len(text.normalized)
    return f"{size} characters < {config.min_chars}" if size < config.min_chars else None


def _too_long(text: QueryText, config: QueryFilterConfig) -> str | None:
    size = len(text.normalized)
    return f"{size} characters > {config.max_chars}" if size > config.max_chars else None


# A query cut off mid-sentence ends on a word that needs a continuation, or on an opening bracket or a comma.
_DANGLING_WORDS = frozenset({"the", "an", "and", "or", "but", "of", "by", "with", "to", "from", "than", "whose"})
_OPEN_END = re.compile(r"[,(\[{]$")
_QUOTED = re.compile(r'"[^"\n]*"')
_ESCAPED_BRACE = re.compile(r"\\[{}]")


def _incomplete(text: QueryText, config: QueryFilterConfig) -> str | None:
    last = text.normalized.rsplit(" ", 1)[-1]
    if last.casefold() in _DANGLING_WORDS:
        return f"ends with {last!r}"
    if _OPEN_END.search(last):
        return f"ends with {last[-1]!r}"
    # Truncation inside LaTeX, JSON or code leaves braces open. Quoted strings may hold braces on purpose
    # (a bracket-matching exercise), and `\{` is a literal brace in LaTeX.
    unquoted = _ESCAPED_BRACE.sub("", _QUOTED.sub("", text.original))
    unclosed = unquoted.count("{") - unquoted.count("}")
    return f"{unclosed} unclosed '{{'" if unclosed > 0 else None


_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')\]]+|\bwww\.[a-z0-9-]+\.[a-z]{2,}\S*", re.IGNORECASE)
# Hosts that name no outside content: the answer never depends on fetching them.
_LOCAL_HOST = re.compile(r"^(?:\w+://)?(?:localhost|127\.0\.0\.1|0\.0\.0\.0|(?:[\w-]+\.)*example\.(?:com|org|net))\b")


def _contains_url(text: QueryText, config: QueryFilterConfig) -> str | None:
    # In code tasks a URL is data (a parser's test input), not content the answer depends on.
    if text.category in config.url_exempt_categories:
        return None
    urls = [u for u in _URL.findall(text.normalized) if not _LOCAL_HOST.match(u)]
    return urls[0][:200] if urls else None


_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$|^\s*\+(?:[-=]+\+)+\s*$")
_MIN_UNRULED_ROWS = 3


def _table_heavy(text: QueryText, config: QueryFilterConfig) -> str | None:
    lines = [line.strip() for line in text.original.splitlines() if line.strip()]
    table_lines = sum(len(block) for block in _table_blocks(lines))
    if not lines or table_lines / len(lines) <= config.max_table_fraction:
        return None
    return f"{table_lines} of {len(lines)} lines are table rows"


def _table_blocks(lines: list[str]) -> list[list[str]]:
    """Markdown and ASCII tables: a run of lines with a rule (`---|---`, `+---+`), or at least three lines framed by
    `|` on both sides. An equation with absolute values, or a shell pipeline, is neither."""
    blocks, run = [], []
    for line in [*lines, ""]:
        if "|" in line or _TABLE_RULE.match(line):
            run.append(line)
            continue
        if any(_TABLE_RULE.match(row) for row in run):
            blocks.append(run)
        else:
            framed = [row for row in run if row.startswith("|") and row.endswith("|") and row.count("|") >= 3]
            if len(framed) >= _MIN_UNRULED_ROWS:
                blocks.append(framed)
        run = []
    return blocks


# Characters that are not text: invisible controls, private-use and unassigned code points, and U+FFFD, which a
# decoder leaves where bytes were lost.
_NOISE = regex.compile(r"[[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\ufffd]--[\t\n\r]]", flags=regex.V1)


def _unicode_noise(text: QueryText, config: QueryFilterConfig) -> str | None:
    noise = len(_NOISE.findall(text.original))
    ratio = noise / len(text.original)
    return f"{noise} noise characters ({ratio:.1%})" if ratio > config.max_noise_ratio else None


# Order matters only for which reason a query that fails several gets: the cheapest and most basic come first.
FILTERS: tuple[tuple[str, Filter], ...] = (
    ("empty", _empty),
    ("too_short", _too_short),
    ("too_long", _too_long),
    ("unicode_noise", _unicode_noise),
    ("incomplete", _incomplete),
    ("contains_url", _contains_url),
    ("table_heavy", _table_heavy),
)


def first_failure(text: QueryText, config: QueryFilterConfig) -> tuple[str, str] | None:
    """(reason, detail) of the first filter that drops the query; None when every filter keeps it."""
    for reason, check in FILTERS:
        detail = check(text, config)
        if detail is not None:
            return reason, detail
    return None
