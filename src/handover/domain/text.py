"""What every string from outside must satisfy before it can reach a store (SPEC 5, "More fixes"; SPEC 2.1).

Every store keeps text as Unicode: PostgreSQL refuses a NUL character in text, and no encoding can write a lone
surrogate (``"\\ud800"`` in JSON decodes to one). Ids also have one length limit on every store, so that
nothing is cut or refused by one store and kept by another (PostgreSQL's ``varchar(255)`` columns). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAX_ID_LENGTH = 255  # mid, request id, user id, organisation id, asset identifier, courseid, batchid


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored (``"a NUL character"``, ``"a lone surrogate"``), or None."""
    if "\x00" in value:
        return "a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate"
    return None


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a storable id (a text problem, or longer than ``MAX_ID_LENGTH``), or None."""
    problem = text_problem(value)
    if problem is not None:
        return f"contains {problem}"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    return None


def is_storable_id(value: Any) -> bool:
    return isinstance(value, str) and id_problem(value) is None


def first_bad_string(doc: Any, root: str = "") -> tuple[str, str] | None:
    """``(path, problem)`` of the first key or string value anywhere in a decoded JSON value that
    ``text_problem`` refuses (path like ``request.objects[2].identifier``), or None. Iterative; the paths are
    built only once a problem is known to be there (a fixture load checks every record)."""
    if _storable(doc):
        return None
    for path, text in _strings(doc, root):
        problem = text_problem(text)
        if problem is not None:
            return printable(path) or "(the value)", problem
    return None


_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)  # made once: json.dumps makes one per call


def _storable(doc: Any) -> bool:
    """Whether every key and string value of ``doc`` passes ``text_problem``: all of them checked at once, in the
    JSON text of ``doc`` (which escapes a NUL as ``\\u0000`` and keeps a lone surrogate; a value that merely looks
    like that escape is looked at string by string), else joined (Python never pairs surrogates of separate
    strings, so a lone one stays lone)."""
    try:
        text = _ENCODER.encode(doc)
    except (TypeError, ValueError, RecursionError):
        pass
    else:
        if "\\u0000" not in text:
            return text_problem(text) is None
    texts: list[str] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            texts.append(node)
        elif isinstance(node, dict):
            texts.extend(k for k in node if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return text_problem("".join(texts)) is None


def _strings(doc: Any, root: str) -> Iterator[tuple[str, str]]:
    stack: list[tuple[str, Any]] = [(root, doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            items = list(node.items())
            for key, value in reversed(items):
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    yield name, key
                stack.append((name, value))
        elif isinstance(node, list | tuple):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))


def printable(text: str) -> str:
    """``text`` safe to show and to store: NUL and lone surrogates written as escapes (``\\x00``,
    ``\\ud800``), everything else as it is."""
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
