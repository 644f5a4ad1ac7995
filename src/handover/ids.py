"""Random (version 4) UUIDs as text, from the operating system's randomness read 4 KiB at a time.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom`` each time, and ``os.urandom`` lets go of the GIL around the
system call: on the HTTP server's event loop each call handed the GIL to a thread of the pool (a request's SQL,
the queue worker) and waited to get it back. A status request of an unknown id made two such calls (its message
id and its answer's ``resmsgid``): in a cProfile of the app driven in-process by an ad-hoc script (1,000 such
requests from 50 concurrent callers, issue 15), ``os.urandom`` took 1.02 s of the event loop's 2.01 s, where the
call alone takes about 1 microsecond. Here the bytes come from a buffer of 256 UUIDs' worth, refilled from
``os.urandom`` (the same source) when used up. A child process after ``fork`` starts with an empty buffer, so that
parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_CHUNK = 16 * 256
_lock = threading.Lock()
_buffer = b""
_offset = 0


def _forget() -> None:
    global _buffer, _offset, _lock
    _buffer, _offset, _lock = b"", 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def uuid4() -> str:
    """A new random UUID, as ``str(uuid.uuid4())`` (the same bits set: version 4, RFC 4122 variant)."""
    global _buffer, _offset
    with _lock:
        if _offset >= len(_buffer):
            _buffer, _offset = os.urandom(_CHUNK), 0
        raw = _buffer[_offset:_offset + 16]
        _offset += 16
    return str(uuid.UUID(bytes=raw, version=4))
