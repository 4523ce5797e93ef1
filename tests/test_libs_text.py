"""The one rule for people-facing text (libs/text.py) and the router's id pattern."""

from __future__ import annotations

import re

import pytest

from gateway.fields import INT64_MAX, decimal_at_most
from libs.text import BIDI_CONTROL, CONTROL, text_problem


@pytest.mark.parametrize(
    "value",
    ["Plain", "Ünïcödé ✓ 😀", "\u05e9\u05dc\u05d5\u05dd \u200f(RTL)", "a\u00a0b", "tab-free", ""],
)
def test_ordinary_text_passes(value: str) -> None:
    assert text_problem(value) is None
    assert text_problem(value, multiline=True) is None


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x20), 0x7F, 0x80, 0x85, 0x9F)])
def test_every_control_character_is_refused_on_one_line(char: str) -> None:
    assert text_problem(f"a{char}b") == CONTROL


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))])
def test_bidi_embeddings_overrides_and_isolates_are_refused(char: str) -> None:
    assert text_problem(f"a{char}b") == BIDI_CONTROL
    assert text_problem(f"a{char}b", multiline=True) == BIDI_CONTROL


def test_multiline_keeps_tab_newline_and_crlf_only() -> None:
    assert text_problem("line 1\n\tline 2\r\nline 3", multiline=True) is None
    assert text_problem("a\rb", multiline=True) == CONTROL  # a lone CR rewrites a terminal line
    assert text_problem("a\r", multiline=True) == CONTROL
    for char in ("\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85"):
        assert text_problem(f"a{char}b", multiline=True) == CONTROL


@pytest.mark.parametrize("limit", [1, 9, 10, 19, 100, 305, 1000, 2024])
def test_decimal_at_most_matches_exactly_one_to_limit(limit: int) -> None:
    pattern = re.compile(f"(?:{decimal_at_most(limit)})")
    matched = [n for n in range(0, limit + 200) if pattern.fullmatch(str(n))]
    assert matched == list(range(1, limit + 1))


def test_id_pattern_is_bounded_by_int64() -> None:
    pattern = re.compile(f"(?:{decimal_at_most(INT64_MAX)})")
    for value in (1, 10**18, INT64_MAX - 1, INT64_MAX):
        assert pattern.fullmatch(str(value))
    for text in (str(INT64_MAX + 1), str(10**19), "9300000000000000000", "0", "01", "-1", "1e3"):
        assert not pattern.fullmatch(text)
