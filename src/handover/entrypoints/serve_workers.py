"""``handover serve --workers N`` (setting ``api.workers``): N serving processes on one listening socket.

uvicorn's own supervisor starts and watches them (``uvicorn.run(..., workers=N)``: each process a fresh interpreter
that calls ``serving_app``, restarted when it dies, all stopped on SIGTERM/SIGINT). One Python process answers on
one core at most (the GIL); ``bench/api_latency.py`` measures one and two serving processes side by side (issue
15; its docstring and the README have the figures).

What a process of its own changes, and how it is kept as with one process:

- **The queue's worker** (the embedded store's event queue) runs in the parent, beside the supervisor, not in the
  serving processes: one worker, whatever N, looking for events every ``WORKER_POLL_S`` (the serving processes'
  publishes cannot wake it). ``/health`` of a serving process then checks the store, not the worker (as
  ``--no-worker``). With ``--no-worker`` or on Kafka, no process runs it.
- **A serving process stops when ``serve`` is gone** (killed with SIGKILL, say): it then has no queue worker
  behind it and holds the port a new ``serve`` needs (``watch_parent``).
- **The store and settings files** reach the serving processes through the environment (``HANDOVER_STORE``,
  ``HANDOVER_CONFIG``), set by ``serve`` from its options before they start.
- **The SQLite writers** of all the processes take turns on a lock file beside the database
  (``adapters/sql_schema._WriterTurns``), as the threads of one process do.
- **/metrics and the console's counters** add up every process's counters, the worker's included: ``serve`` points
  prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) at a directory of its own, removed at exit,
  unless that variable is already set (then it is used, and left).
- **The garbage collector** of each serving process is settled once its app is built
  (``settle_garbage_collector``), as ``serve`` does with one process.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from handover.bootstrap import api_parts, bootstrap
from handover.entrypoints.api import create_app
from handover.entrypoints.serve_logging import start_logging_off_the_event_loop

GC_THRESHOLDS = (50_000, 20, 100)  # gc.set_threshold of a serving process (CPython's defaults: 700, 10, 10)
PARENT_WATCH_S = 1.0  # how often a serving process checks that serve, its parent, is alive
WORKER_POLL_S = 0.05  # how often the parent's queue worker looks for events (``handover queue-worker --poll``)
FACTORY = f"{__name__}:serving_app"  # what uvicorn's supervisor imports in each serving process
log = logging.getLogger("uvicorn.error")


def serving_app() -> FastAPI:
    """The application of one serving process (uvicorn calls it, ``factory=True``): the store and settings of the
    environment ``serve`` set, no queue worker, uvicorn's log lines written off the event loop until the
    application's shutdown (uvicorn ends the process by the signal it was stopped with, so that nothing queued
    after it would be written), and a watch on the parent (``watch_parent``). Raises what ``create_app`` raises
    (``serve`` checked the same settings before starting the processes)."""
    stop_logging = start_logging_off_the_event_loop()
    atexit.register(stop_logging)
    handover = bootstrap()
    parts = api_parts(handover)
    parts.worker = None
    app = create_app(handover, parts)
    serving = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with serving(application) as state:
                yield state
        finally:
            stop_logging()

    app.router.lifespan_context = lifespan
    watch_parent(os.getppid())
    settle_garbage_collector()
    return app


def watch_parent(parent: int, every: float = PARENT_WATCH_S) -> threading.Thread:
    """A thread that stops this process as SIGTERM does (the requests in hand are answered) once ``parent`` is no
    longer its parent: a serving process whose ``serve`` was killed (SIGKILL, the OOM killer) would otherwise
    keep the port and answer with no queue worker behind it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        log.warning("serve (pid %d) is gone: this serving process stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="handover-parent-watch", daemon=True)
    thread.start()
    return thread


def settle_garbage_collector() -> None:
    """Once the application is built, what is alive (modules, the app, its routes and models: about 96,000 objects
    the collector tracks, on SQLite) is moved out of the collector's reach (``gc.freeze``), and the young
    generation is collected every 50,000 allocations instead of 700 (``GC_THRESHOLDS``). The collector's passes,
    taken while requests wait, made the slowest answers (issue 15: ``bench/api_latency.py``, whose docstring has
    the figures). Garbage in reference cycles is collected later, not kept."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
