"""``fabric.untrusted.printable``: one bounded line, whatever a peer reported."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fabric.untrusted import printable


def test_control_characters_are_escaped_and_long_text_is_cut() -> None:
    assert printable("a\nb\r\x1b[0m\u2028\t c") == "a\\nb\\r\\x1b[0m\\u2028\\t c"
    assert printable("h" * 1000, 10) == "h" * 10 + "...(990 more characters)"
    assert printable("node-1.example.org") == "node-1.example.org"
    assert printable(ValueError("bad\nline")) == "bad\\nline"


@given(st.text(st.characters(blacklist_categories=())), st.integers(1, 300))
def test_the_result_is_one_printable_bounded_line(text: str, limit: int) -> None:
    shown = printable(text, limit)
    assert shown.isprintable()
    assert len(shown) <= 10 * limit + 40
