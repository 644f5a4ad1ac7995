"""A large JSON object read from a file as a stream of its members, an array member one element at a time.

For ``handover load``: a fixture's ``users``, ``course_batches`` and ``assets`` arrays can hold millions of
records, and the whole document parsed at once costs memory in proportion. Here the file is decoded a block at a
time (UTF-8, newlines translated as ``Path.read_text`` does) and each member value or array element is decoded
by the standard library's own scanner (``json.scanner``, its C version): every value comes out exactly as
``json.loads`` of the whole text would give it (``NaN``, lone surrogates, big integers, a key given twice in an
object: the last wins), and a text that is not JSON fails with ``json.loads``'s message, line, column and
character offset. Only the top-level object and its array members are taken apart here, following the C
scanner's order of checks.

(The streaming parser ijson 3.6.0, yajl2_c backend, was measured first on the 144 MB fixture of
``bench/bulk_transfer.py`` at N = 200,000: ``ijson.items`` once per array, three passes, 6.3 s, and one pass
building only the course batches 3.8 s, against 2.2 s for ``json.loads`` of the whole text and 2.2 s for this
module; load average 1.4. That alone would exceed the ``load`` target of issue 15, <= 2 x raw ``executemany``.)
"""

from __future__ import annotations

import codecs
import io
import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from handover.domain.fixture import FIXTURE_KEYS, RepeatedFixtureKey

BLOCK = 1 << 20  # bytes read at a time
_WS = re.compile(r"[ \t\n\r]*")  # json.decoder's WHITESPACE
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")  # may decode to a NUL or a surrogate (or follow a \\)
_SCANSTRING: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_MAKE_SCANNER: Callable[[json.JSONDecoder], Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner  # type: ignore[assignment]


class JsonStreamError(Exception):
    """The text is not JSON: ``str()`` is ``json.loads``'s message for it (``msg: line L column C (char P)``,
    over the text as ``read_text`` gives it). Not a ValueError: a caller tells it from a bad record."""

    def __init__(self, msg: str, pos: int, lineno: int, colno: int) -> None:
        super().__init__(f"{msg}: line {lineno} column {colno} (char {pos})")
        self.msg, self.pos, self.lineno, self.colno = msg, pos, lineno, colno


class StreamUnreadable(Exception):
    """The file could not be read on (an I/O error, or bytes that are not UTF-8: the codec's message with the
    byte offset in the file, as ``read_text`` gives it)."""


class JsonArrayStream:
    """An array member of the object, its elements decoded one at a time as it is iterated. What is not
    iterated is skipped (still checked to be JSON) when the stream moves to the next member."""

    def __init__(self, stream: JsonObjectStream) -> None:
        self._stream = stream
        self._elements = stream._elements()

    def __iter__(self) -> Iterator[Any]:
        return self._elements  # a loop over the array runs the generator itself

    def __next__(self) -> Any:
        return next(self._elements)

    def skip(self) -> None:
        for _ in self._elements:
            pass


class JsonObjectStream:
    """The members of the JSON value a binary file holds, read ``BLOCK`` bytes at a time.

    ``is_object()``: whether that value is an object. ``members()``: its ``(name, value)`` pairs in the file's
    order, a value that is an array as a ``JsonArrayStream`` (consumed before the next pair is asked for, else
    skipped), any other value decoded whole; the text after the object is checked (``Extra data``) once the last
    pair is taken. ``drain()``: read the rest of the text to its end, wherever the reading stopped, checking it is
    JSON (the whole value when it is not an object). ``names``: the members' names read so far.
    ``text_storable()``: see there. Errors: ``JsonStreamError``, ``StreamUnreadable``. Memory: about a block and
    the member or element being decoded (a text that is not JSON is read on to its end before that is reported: a
    truncated value and a wrong one look alike until then)."""

    def __init__(self, file: BinaryIO, block: int = BLOCK) -> None:
        self._file = file
        self._block = block
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self._text = io.IncrementalNewlineDecoder(self._utf8, translate=True)
        self._bytes = 0  # bytes handed to the decoder so far
        self.buf = ""  # decoded text, from absolute offset self._base
        self.pos = 0  # where reading stands in buf
        self._base = 0
        self._lines = 0  # newlines before buf
        self._last_newline = -1  # absolute offset of the last newline before buf
        self.eof = False
        self._scan = _MAKE_SCANNER(json.JSONDecoder())
        self._members: Iterator[tuple[str, Any]] | None = None
        self._finished = False
        self.names: list[str] = []  # the members' names read so far, in order
        self._storable = True

    def text_storable(self) -> bool:
        """Whether every key and string decoded so far can be stored (``domain.text``): true while the text read
        so far has no escape that can decode to a NUL or to a surrogate (``\\u0000``, ``\\ud800``-``\\udfff``);
        the text itself is UTF-8, and holds no raw control character (the scanner refuses one)."""
        return self._storable

    # --- reading --------------------------------------------------------------------------------------------

    def _more(self, blocks: int = 1) -> None:
        """Append the text of the next ``blocks`` blocks to ``buf`` (``eof`` at the end of the file)."""
        pending = len(self._utf8.getstate()[0])
        try:
            data = self._file.read(self._block * blocks)
        except OSError as exc:
            raise StreamUnreadable(exc.strerror or str(exc)) from exc
        try:
            text = self._text.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            at = self._bytes - pending + exc.start
            where = (f"byte 0x{exc.object[exc.start]:02x} in position {at}" if exc.end - exc.start == 1
                     else f"bytes in position {at}-{at + exc.end - exc.start - 1}")
            raise StreamUnreadable(f"'{exc.encoding}' codec can't decode {where}: {exc.reason}") from exc
        self._bytes += len(data)
        if not data:
            self.eof = True
        if self._storable and _SUSPECT.search(self.buf[-5:] + text):
            self._storable = False
        if self.pos > self._block:  # drop what has been read
            self._drop()
        self.buf += text

    def _drop(self) -> None:
        gone = self.buf[: self.pos]
        self._lines += gone.count("\n")
        last = gone.rfind("\n")
        if last >= 0:
            self._last_newline = self._base + last
        self._base += self.pos
        self.buf = self.buf[self.pos :]
        self.pos = 0

    def _error(self, msg: str, at: int) -> JsonStreamError:
        """``msg`` at ``at`` (an index in ``buf``), placed as ``json.loads`` places it in the whole text."""
        last = self.buf.rfind("\n", 0, at)
        line = self._lines + self.buf.count("\n", 0, at) + 1
        column = at - last if last >= 0 else self._base + at - self._last_newline
        return JsonStreamError(msg, self._base + at, line, column)

    def _peek(self) -> str:
        """Skip whitespace; the next character, "" at the end of the text."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self._more()

    def _decode(self, scan: Callable[[str, int], tuple[Any, int]], at: int) -> Any:
        """The value ``scan`` decodes at ``pos + at``; reading moves past it. A failure, or a value that ends within
        two characters of the text read so far (a number may go on: "-0." and "1e+" decode as "-0" and "1"), is
        tried again with more text (twice as much each time: a long value is not scanned over and over), until the
        end of the file."""
        blocks = 1
        while True:
            start = self.pos + at
            try:
                value, end = scan(self.buf, start)
            except StopIteration as exc:
                if not self.eof:
                    self._more(blocks)
                    blocks *= 2
                    continue
                raise self._error("Expecting value", exc.value) from None
            except json.JSONDecodeError as exc:
                if not self.eof:
                    self._more(blocks)
                    blocks *= 2
                    continue
                raise self._error(exc.msg, exc.pos) from None
            if end + 2 >= len(self.buf) and not self.eof:  # "1.", "1e+": "1" so far
                self._more(blocks)
                blocks *= 2
                continue
            self.pos = end
            return value

    def _expect(self, char: str, msg: str) -> None:
        if self._peek() != char:
            raise self._error(msg, self.pos)
        self.pos += 1

    # --- the structure ---------------------------------------------------------------------------------------

    def is_object(self) -> bool:
        """Whether the file's value is a JSON object (what ``members`` takes apart)."""
        if self._members is None:
            self._start()
        return self._members is not _NOT_AN_OBJECT

    def _start(self) -> None:
        while not self.buf and not self.eof:
            self._more()
        if self.buf.startswith("\ufeff"):
            raise self._error("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
        self._members = self._object() if self._peek() == "{" else _NOT_AN_OBJECT

    def members(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of each member, in the file's order (see the class)."""
        if not self.is_object():
            raise ValueError("not a JSON object")
        assert self._members is not None
        return self._members

    def _object(self) -> Iterator[tuple[str, Any]]:
        self.pos += 1  # {
        if self._peek() == "}":
            self.pos += 1
        else:
            while True:
                if self._peek() != '"':
                    raise self._error("Expecting property name enclosed in double quotes", self.pos)
                name = self._decode(_scan_key, 1)
                self.names.append(name)
                self._expect(":", "Expecting ':' delimiter")
                char = self._peek()
                if char == "[":
                    self.pos += 1
                    array = JsonArrayStream(self)
                    yield name, array
                    array.skip()
                else:
                    yield name, self._decode(self._scan, 0)
                if self._closed_or_next("}"):
                    break
        self._end()

    def _elements(self) -> Iterator[Any]:
        """The elements of the array whose ``[`` was just read; reading then stands after its ``]``."""
        if self._peek() == "]":
            self.pos += 1
            return
        scan, match = self._scan, _WS.match
        while True:
            # the common case first: the element and the comma after it within the text read so far
            buf, start = self.buf, self.pos
            try:
                value, end = scan(buf, start)
            except (StopIteration, json.JSONDecodeError):
                end = len(buf)
            if end + 2 < len(buf):
                after = match(buf, end).end()  # type: ignore[union-attr]
                if after < len(buf) and buf[after] == ",":
                    following = match(buf, after + 1).end()  # type: ignore[union-attr]
                    if following < len(buf):
                        self.pos = following
                        yield value
                        continue
                self.pos = end
            else:
                value = self._decode(scan, 0)
            yield value
            if self._closed_or_next("]"):
                return
            self._peek()

    def _closed_or_next(self, close: str) -> bool:
        """After a member or an element: True past the ``close`` bracket, False past the comma before the next one;
        else the error ``json.loads`` gives there."""
        char = self._peek()
        if char == close:
            self.pos += 1
            return True
        if char != ",":
            raise self._error("Expecting ',' delimiter", self.pos)
        self.pos += 1
        return False

    def _end(self) -> None:
        """After the value: nothing but whitespace."""
        if self._peek() != "":
            raise self._error("Extra data", self.pos)
        self._finished = True

    def drain(self) -> None:
        """Read the rest of the text, checking it is JSON (``JsonStreamError`` if not)."""
        if self._finished:
            return
        if self._members is None:
            self._start()
        if self._members is _NOT_AN_OBJECT:
            if self._peek() == "[":
                self.pos += 1
                for _ in self._elements():
                    pass
            else:
                self._decode(self._scan, 0)
            self._end()
            return
        assert self._members is not None
        for _ in self._members:
            pass


def _scan_key(text: str, at: int) -> tuple[str, int]:
    return _SCANSTRING(text, at, True)


_NOT_AN_OBJECT: Iterator[tuple[str, Any]] = iter(())


def load_fixture(load: Callable[[Any], dict[str, int]], file: BinaryIO) -> dict[str, int]:
    """``handover load``'s reading: the fixture in ``file`` (binary, seekable, at its start) handed to a store's
    ``load`` (``SqlStore.load``, ``SunbirdStore.load``) as a ``JsonObjectStream``, so that a store writing in
    chunks keeps its memory flat in the fixture's size; returns its counts. The errors come in the order of
    reading the file whole then loading it: ``StreamUnreadable``, then ``JsonStreamError`` (a bad record found
    before the end of a text that is not JSON: the text's error), then the store's ValueError (a bad fixture).
    A fixture that gives ``users``, ``course_batches`` or ``assets`` twice is loaded again whole, as
    ``json.loads`` reads it (the last one counts; the first attempt, stopped at the second one or at a bad record,
    was rolled back): only then does memory grow with the file. ``load`` must write nothing when it raises."""
    stream = JsonObjectStream(file)
    try:
        return load(stream)
    except ValueError:
        stream.drain()
        if not any(stream.names.count(key) > 1 for key in FIXTURE_KEYS):
            raise
        # the bad record may be in a list that json.loads drops
    except RepeatedFixtureKey:
        pass
    file.seek(0)
    try:
        text = io.TextIOWrapper(file, encoding="utf-8").read()  # as Path.read_text: newlines translated
    except UnicodeDecodeError as exc:
        raise StreamUnreadable(str(exc)) from exc
    except OSError as exc:
        raise StreamUnreadable(exc.strerror or str(exc)) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonStreamError(exc.msg, exc.pos, exc.lineno, exc.colno) from None
    return load(doc)
