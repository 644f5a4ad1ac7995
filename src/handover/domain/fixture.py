"""A fixture's records (SPEC 4: ``users``, ``course_batches``, ``assets``; ``notifications`` and any other key are
ignored), from a decoded document or from a stream of its members (``service.json_stream``). Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

FIXTURE_KEYS = ("users", "course_batches", "assets")


@runtime_checkable
class FixtureMembers(Protocol):
    """A JSON document read as a stream: ``is_object()``, then ``members()``: ``(name, value)`` in the text's
    order, an array value as an iterator of its elements (``service.json_stream.JsonObjectStream``)."""

    def is_object(self) -> bool: ...

    def members(self) -> Iterator[tuple[str, Any]]: ...

    def text_storable(self) -> bool: ...


class RepeatedFixtureKey(Exception):
    """A streamed fixture gives one of ``FIXTURE_KEYS`` twice: as ``json.loads`` keeps only the last, the records
    of the first may not be written; the caller loads the document whole instead (what was written is to be
    rolled back)."""


def fixture_records(
    doc: Mapping[str, Any] | FixtureMembers,
) -> Iterator[tuple[str, Iterable[Mapping[str, Any]], Callable[[], bool]]]:
    """``(key, records, storable)`` for each of ``FIXTURE_KEYS`` the fixture has: for a decoded document in the order
    ``users``, ``course_batches``, ``assets`` (the shape of ``users`` checked first, those of the other two before
    the course batches are given), for a stream in the text's order, the records one at a time (a key in any
    order). ValueError ``a fixture is a JSON object`` and
    ``fixture 'KEY' must be a list of objects`` (a stream: when the first record that is not an object is reached);
    ``RepeatedFixtureKey``. ``storable()``: true when every key and string of the records given so far is
    known to be storable (``domain.text``; a stream can tell from its text, a decoded document cannot: false),
    so that they need not be checked one by one."""
    if isinstance(doc, Mapping):
        yield "users", fixture_list(doc, "users"), _unknown
        batches, assets = fixture_list(doc, "course_batches"), fixture_list(doc, "assets")
        yield "course_batches", batches, _unknown
        yield "assets", assets, _unknown
        return
    if not isinstance(doc, FixtureMembers) or not doc.is_object():
        raise ValueError("a fixture is a JSON object")
    seen: set[str] = set()
    for key, value in doc.members():
        if key not in FIXTURE_KEYS:
            continue
        if key in seen:
            raise RepeatedFixtureKey(key)
        seen.add(key)
        if not isinstance(value, Iterator):  # a streamed array is an iterator, any other value is decoded
            raise ValueError(f"fixture '{key}' must be a list of objects")
        yield key, _objects(key, value), doc.text_storable


def _unknown() -> bool:
    return False


def _objects(key: str, records: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    for record in records:
        if not isinstance(record, dict):
            raise ValueError(f"fixture '{key}' must be a list of objects")
        yield record


def fixture_list(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """``doc[key]`` (an empty list if absent), checked to be a list of objects (ValueError if not)."""
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"fixture '{key}' must be a list of objects")
    return value
