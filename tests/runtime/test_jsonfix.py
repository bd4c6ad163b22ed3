"""A grammar-constrained answer cut off by max_tokens is closed, not thrown away."""

from __future__ import annotations

import pytest

from shoal.runtime.jsonfix import close_truncated, loads_constrained

# what the shipped model wrote for the primary's reflect schema with max_tokens = 48 (a raw newline inside)
CUT = (
    '{ "share": true, "note": "This is a great idea. Here\'s a tip to help you learn to cook: \n'
    "• Use online cooking resources such as Instagram-worthy recipes that showcase your culinary"
)


def test_a_note_cut_off_mid_word_ends_on_its_last_whole_word() -> None:
    data = loads_constrained(CUT, "length")
    assert data["share"] is True
    assert data["note"].endswith("recipes that showcase your")


def test_only_a_cut_off_answer_is_repaired() -> None:
    with pytest.raises(ValueError):
        loads_constrained('{"done": false, "question": "Why', "stop")
    assert loads_constrained('{"done": false, "question": "Why"}', "stop") == {"done": False, "question": "Why"}


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ('{"a": [1, 2,', '{"a": [1, 2]}'),
        ('{"q": "ab\\', '{"q": "ab"}'),
        ('{"q": "say \\"hi\\" to', '{"q": "say \\"hi\\""}'),
        ('{"done": true, "question": "', '{"done": true, "question": ""}'),
    ],
)
def test_open_strings_arrays_and_objects_are_closed(text: str, closed: str) -> None:
    assert close_truncated(text) == closed


@pytest.mark.parametrize("text", ['{"done": ', '{"done": false, "que', '{"a": 1}}'])
def test_what_cannot_become_a_value_is_an_error(text: str) -> None:
    assert close_truncated(text) is None
    with pytest.raises(ValueError):
        loads_constrained(text, "length")
