"""``service.json_stream``: a JSON object read a block at a time gives what ``json.loads`` of the whole text
gives, and fails where it fails with the same message, line, column and offset (every cut of a small fixture,
every one-character change of it, at block sizes that split every token)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from handover.service.json_stream import JsonObjectStream, JsonStreamError, StreamUnreadable

FIXTURE = (
    '{"users": [{"id": "u1", "roles": ["A", "B"], "n": 1.5e3}],\r\n "notifications": [{"mid": "m"}, 7],\n'
    ' "x": {"deep": [1, {"a": null}]}, "course_batches" : [ {"courseid": "c\\u00e9", "batchid": "b", '
    '"status": 12345, "mentors": []} , {"k": "\\ud800", "k": true, "big": 123456789012345678901234567890} ],'
    '\n "assets": [], "e": [], "n": -0.5, "s": "tail"}\n'
)


def streamed(data: bytes, block: int) -> Any:
    """The document as the stream gives it (arrays listed), or the error's text; the reading then goes on to the
    end as ``drain`` does."""
    stream = JsonObjectStream(io.BytesIO(data), block=block)
    try:
        if not stream.is_object():
            stream.drain()
            return "not an object"
        out = []
        for name, value in stream.members():
            out.append((name, list(value) if hasattr(value, "skip") else value))
        return out
    except JsonStreamError as exc:
        return f"error {exc}"


def whole(text: str) -> Any:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"error {exc}"
    if not isinstance(doc, dict):
        return "not an object"
    return None


def check(text: str, block: int) -> None:
    expected = whole(text.replace("\r\n", "\n").replace("\r", "\n"))
    got = streamed(text.encode("utf-8", "surrogatepass"), block)
    if expected is None:
        assert not isinstance(got, str), (text, got)
        assert json.dumps(dict(got)) == json.dumps(json.loads(text.replace("\r\n", "\n"))), text
    else:
        assert got == expected, text


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
def test_every_cut_of_the_text_fails_as_json_loads(block: int) -> None:
    for end in range(len(FIXTURE) + 1):
        check(FIXTURE[:end], block)


@pytest.mark.parametrize("block", [2, 5, 1 << 20])
def test_every_one_character_change_fails_or_reads_as_json_loads(block: int) -> None:
    for at in range(len(FIXTURE)):
        for char in ('"', ",", "]", "}", "[", "{", ":", "x", "1", " ", "\x01"):
            check(FIXTURE[:at] + char + FIXTURE[at + 1 :], block)
        check(FIXTURE[:at] + FIXTURE[at + 1 :], block)


@pytest.mark.parametrize("text", ["", "   ", "[1, 2]", "[1, 2", "7", '"s"', "null", "[] x", "\ufeff{}", "{} {}",
                                  "{}", " {\n} \n", '{"a": NaN, "b": -Infinity}', '{"a": [], }', '{"a": [1,]}'])
def test_other_documents(text: str) -> None:
    for block in (1, 4, 1 << 20):
        check(text, block)


def test_the_members_values_are_those_of_json_loads() -> None:
    got = dict(streamed(FIXTURE.encode(), 3))
    assert got == {k: v for k, v in json.loads(FIXTURE).items()}
    assert got["course_batches"][1] == {"k": True, "big": 123456789012345678901234567890}


def test_bytes_that_are_not_utf8_are_reported_with_their_offset_in_the_file() -> None:
    data = FIXTURE.encode()
    for at in (0, 5, len(data) // 2, len(data) - 1):
        bad = data[:at] + b"\xff" + data[at + 1 :]
        with pytest.raises(UnicodeDecodeError) as whole_file:
            bad.decode("utf-8")
        with pytest.raises(StreamUnreadable) as stream:
            JsonObjectStream(io.BytesIO(bad), block=4).drain()
        assert str(stream.value) == str(whole_file.value)
    cut = data + "é".encode()[:1]  # a sequence cut at the end of the file
    with pytest.raises(UnicodeDecodeError) as whole_file:
        cut.decode("utf-8")
    with pytest.raises(StreamUnreadable) as stream:
        JsonObjectStream(io.BytesIO(cut), block=4).drain()
    assert str(stream.value) == str(whole_file.value)


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800", "\\uDFFF", "\\ud83d\\ude00"])
def test_the_text_is_storable_until_an_escape_that_can_decode_to_a_nul_or_a_surrogate(escape: str) -> None:
    text = '{"a": ["x", "\\u00e9", "\\u2028", "\\\\ud7ff", "\\ud7ff"], "b": ["' + escape + '"], "c": ["y"]}'
    for block in (1, 2, 3, 5, 7, 1 << 20):
        stream = JsonObjectStream(io.BytesIO(text.encode()), block=block)
        seen = []
        for name, values in stream.members():
            list(values)
            seen.append((name, stream.text_storable()))
        assert ("b", False) in seen and seen[-1] == ("c", False), (block, seen)
        if block == 1:  # read as it goes: clean until then
            assert seen[0] == ("a", True)
