"""``domain.text``: which strings no store can keep, found anywhere in a decoded JSON value, with a readable path."""

from __future__ import annotations

import pytest

from handover.domain.text import MAX_ID_LENGTH, first_bad_string, id_problem, printable, text_problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [("plain", None), ("Zoë Ünal 漢字 🙂", None), ("a\x00b", "a NUL character"), ("\ud800", "a lone surrogate"),
     ("x\udfff", "a lone surrogate"), ("\udcff", "a lone surrogate")],
)
def test_text_problem(value: str, problem: str | None) -> None:
    assert text_problem(value) == problem


def test_id_limit() -> None:
    assert id_problem("x" * MAX_ID_LENGTH) is None
    assert id_problem("x" * (MAX_ID_LENGTH + 1)) == f"is longer than {MAX_ID_LENGTH} characters"
    assert id_problem("a\x00") == "contains a NUL character"


def test_first_bad_string_names_the_path_of_a_value_or_a_key() -> None:
    assert first_bad_string({"a": {"b": ["ok", "x\ud800"]}}, "request") == ("request.a.b[1]", "a lone surrogate")
    assert first_bad_string({"ok": 1, "k\x00": 2}) == ("k\\x00", "a NUL character")
    assert first_bad_string({"a": [1, None, True, {"b": "fine"}]}) is None
    assert first_bad_string("\x00") == ("(the value)", "a NUL character")


def test_first_bad_string_is_not_recursive() -> None:
    deep: object = "\x00"
    for _ in range(5000):
        deep = [deep]
    found = first_bad_string(deep)
    assert found is not None and found[1] == "a NUL character"


def test_printable_escapes_only_what_cannot_be_stored() -> None:
    assert printable("Zoë") == "Zoë"
    assert printable("a\x00\ud800é") == "a\\x00\\ud800é"
    assert text_problem(printable("a\x00\ud800")) is None
