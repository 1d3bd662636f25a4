"""Normalization: what filters and embeddings see, and what exact matching compares."""

import pytest

from pipeline.preprocess.normalize import match_key, normalize, words


@pytest.mark.parametrize(
    "text, normalized",
    [
        pytest.param("  What is\n\n2 +\t2?  ", "What is 2 + 2?", id="whitespace-folded"),
        pytest.param("Ｆｉｎｄ ｘ．", "Find x.", id="nfkc-fullwidth"),
        pytest.param("x\u200b=\ufeff1\x00", "x=1", id="invisible-removed"),
        pytest.param("ﬁnd the ½", "find the 1⁄2", id="nfkc-compatibility"),
        pytest.param("\u200b\u200b", "", id="only-invisible"),
    ],
)
def test_normalize(text, normalized):
    assert normalize(text) == normalized


@pytest.mark.parametrize(
    "a, b",
    [
        pytest.param("Find $\\frac{1}{2} + x$.", "find $\\frac {1} {2}+x$ .", id="case-and-spacing"),
        pytest.param("Compute $\\dfrac{a}{b}$", "Compute $\\frac{a}{b}$", id="dfrac"),
        pytest.param("$\\left( 3, \\pi \\right)$", "$(3,\\pi)$", id="left-right"),
        pytest.param("$a\\,b\\;c\\quad d$", "$a b c d$", id="latex-spacing"),
    ],
)
def test_formatting_does_not_change_the_match_key(a, b):
    assert match_key(normalize(a)) == match_key(normalize(b))


@pytest.mark.parametrize(
    "a, b",
    [
        pytest.param("What is 2+3?", "What is 2+4?", id="other-number"),
        pytest.param("a b", "ab", id="space-between-words-matters"),
        pytest.param("$x \\\\ y$", "$x y$", id="latex-newline-is-not-spacing"),
    ],
)
def test_content_changes_the_match_key(a, b):
    assert match_key(normalize(a)) != match_key(normalize(b))


def test_words_drop_symbols_and_markup():
    assert words(match_key(normalize("Find $\\frac{1}{2}+x$, then y."))) == ["find", "frac", "1", "2", "x", "then", "y"]
