"""The logging of ``handover serve``: uvicorn's own configuration (its formats, stderr for the server's lines,
stdout for the access log), with the writing done by threads of their own.

Why: the access log writes a line per request. Written from the event loop, each write is a system call that
releases the GIL; with the in-process queue worker busy in another thread, the loop then waits for the GIL up to
the interpreter's switch interval (5 ms) before it can answer the next request. In ``bench/api_latency.py``
(issue 15) that wait was most of a request's time (pyinstrument: 3.1 s of 4.8 s in ``TextIOWrapper.write`` under
``uvicorn.protocols.http.httptools_impl.RequestResponseCycle.send``). Here the loop only puts the record on a
queue (``logging.handlers.QueueHandler``) and a ``QueueListener`` thread formats and writes it.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener

UVICORN_LOGGERS = ("uvicorn", "uvicorn.access")  # the two that uvicorn's configuration gives handlers


class _Enqueue(QueueHandler):
    """Puts the record on the queue as it is: uvicorn's ``AccessFormatter`` reads the record's ``args`` (client,
    method, path, status), which ``QueueHandler.prepare`` would have merged into the message."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def start_logging_off_the_event_loop() -> Callable[[], None]:
    """Apply uvicorn's default logging configuration (``uvicorn.config.LOGGING_CONFIG``), then move the handlers
    of its loggers behind a queue read by a thread; run uvicorn with ``log_config=None`` after it. Returns the
    stop: the threads write what is queued and end, and the loggers write directly again (so that the lines
    logged after it are not lost). Stopping twice does nothing more."""
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(copy.deepcopy(LOGGING_CONFIG))
    listeners = []
    direct: list[tuple[logging.Logger, list[logging.Handler]]] = []
    for name in UVICORN_LOGGERS:  # a queue each: a listener hands a record to all of its handlers
        logger = logging.getLogger(name)
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listeners.append(QueueListener(records, *logger.handlers, respect_handler_level=True))
        direct.append((logger, logger.handlers))
        logger.handlers = [_Enqueue(records)]
    for listener in listeners:
        listener.start()

    def stop() -> None:
        if not listeners:
            return
        for listener in listeners:
            listener.stop()
        listeners.clear()
        for logger, handlers in direct:
            logger.handlers = handlers

    return stop


@contextmanager
def logging_off_the_event_loop() -> Iterator[None]:
    """``start_logging_off_the_event_loop`` for the ``with`` block: run ``uvicorn.run(..., log_config=None)``
    inside. On exit the threads write what is queued and stop."""
    stop = start_logging_off_the_event_loop()
    try:
        yield
    finally:
        stop()
