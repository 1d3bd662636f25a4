"""The structure check applied before any category verifier: the response format, then runaway repetition.

Small and weak teachers loop: the same sentence again and again until `max_tokens`. Such a response may still end
in a right answer, but it is not a reasoning trace worth distilling.
"""

from __future__ import annotations

from collections import Counter

from pipeline.response_format import ParsedResponse, ResponseFormat, parse_response

NGRAM = 20  # words; the paper's repetition filter uses 20-grams
MAX_NGRAM_REPEATS = 3  # a 20-word run may appear this often before the response counts as looping
MAX_SAME_LINES = 4  # consecutive identical non-empty lines


def repetition_failure(text: str) -> str | None:
    """`repetitive_ngram` or `repetitive_lines` when the text loops, else None."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    run = 1
    for previous, line in zip(lines, lines[1:]):
        run = run + 1 if line == previous else 1
        if run >= MAX_SAME_LINES:
            return "repetitive_lines"
    words = text.split()
    if len(words) >= NGRAM * (MAX_NGRAM_REPEATS + 1):
        counts = Counter(tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1))
        if max(counts.values()) > MAX_NGRAM_REPEATS:
            return "repetitive_ngram"
    return None


def check_structure(text: str, response_format: ResponseFormat) -> ParsedResponse:
    """The parsed response, with `failure` set when the format is broken or the reasoning loops."""
    parsed = parse_response(text, response_format)
    if not parsed.ok:
        return parsed
    looping = repetition_failure(parsed.think) or repetition_failure(parsed.answer)
    if looping:
        return ParsedResponse(parsed.think, parsed.answer, looping)
    return parsed
