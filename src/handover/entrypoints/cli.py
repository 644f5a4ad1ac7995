"""The ``handover`` command (SPEC 4). Each command only wires the bootstrap to a service call.

Exit codes: 0 success (also when events were rejected), 2 bad usage or unreadable input (a port already taken
too), 1 store failure (an uninitialised store too: the message says to run ``handover init``).
Long work (``replay``, ``undo``) shows its progress on stderr, by records written: a live line on a terminal, a
plain line every ``PROGRESS_EVERY`` seconds otherwise. Output cut short by its reader (``| head``) ends quietly.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

from handover.bootstrap import App, bootstrap
from handover.config import MAX_API_WORKERS, ConfigError
from handover.service.ports import Outcome


def _plain_help(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # a flag: no "<bool>" beside it
    return option


class Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help(super().get_help_option(ctx))


def _no_type(ctx: Any) -> None:
    return None


class Command(TyperCommand):
    """A command whose usage line names its arguments as ``FIXTURE`` / ``[MID]`` (not typer's ``{fixture}``), with
    no ``<str>`` / ``<path>`` type beside an argument (its metavar and help say what it is)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = _no_type  # type: ignore[method-assign]
        if self.help and not self.short_help:  # the group's list of commands: the docstring's lines joined (typer
            self.short_help = " ".join(self.help.split("\n\n")[0].split())  # keeps their line breaks there)

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


app = typer.Typer(
    cls=Group,
    name="handover",
    help="Sunbird asset ownership transfer and PII clean-up. Start with `handover init`, then `handover load "
    "FIXTURE`; `handover COMMAND --help` gives each command's options and examples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)  # a message is one line (a log, a pipe): the terminal wraps it


def command(name: str | None = None, *, epilog: str | None = None) -> Callable[[F], F]:
    """``app.command`` with ``Command``'s help: every command is declared with it."""
    return app.command(name, cls=Command, epilog=epilog)


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", metavar="URL", show_default=False,
        help="Store URL (sqlite:///..., postgresql://..., sunbird://). Default: env HANDOVER_STORE, else "
        "sqlite:///handover.db.",
    ),
]
ConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--config", metavar="FILE", show_default=False,
        help="Settings file (HOCON or JSON), SPEC 7; repeat it to give both upstream jobs' files. A prefix "
        "inquiry=, lern= or handover= names the file's layout (else recognised from its content). "
        "Env HANDOVER_CONFIG: entries separated by ':'.",
    ),
]

EXIT_STORE = 1
EXIT_USAGE = 2
REPLAY_BATCH = 100  # events per unit of work in replay
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
PROGRESS_EVERY = 5.0  # seconds between progress lines on stderr when it is not a terminal


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"handover {version('handover')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", metavar="", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Sunbird asset ownership transfer and PII clean-up."""


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def check_text(value: str, name: str) -> None:
    """Exit 2 when an argument cannot be an id in any store (NUL, a byte that is not UTF-8, over the length
    limit): a clear usage error, never a store error."""
    from handover.domain.text import id_problem, printable

    problem = id_problem(value)
    if problem is not None:
        fail(f"{name} {printable(value)[:80]!r} {problem}", EXIT_USAGE)


def open_app(store: str | None, config: list[str] | None, *, schema: bool = True) -> App:
    """The wired app; with ``schema``, exit 1 with "run `handover init`" when the store has no schema yet."""
    try:
        handover = bootstrap(store, config)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except Exception as exc:  # a bad store URL or an adapter that cannot start
        fail(f"store: {exc}", EXIT_STORE)
    if schema:
        require_schema(handover)
    return handover


def require_schema(handover: App) -> None:
    """Exit 1 with what to do when the store lacks tables of the schema (stores that cannot tell: no check)."""
    from handover.config import mask_text

    missing = getattr(handover.store, "missing_tables", None)
    if missing is None:
        return
    try:
        tables = missing()
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    if tables:
        url = mask_text(handover.store_url)
        fail(f"the store {url} has no handover schema yet (table {tables[0]!r} is missing): run "
             f"`handover init --store {url}` first", EXIT_STORE)


def output_closed() -> NoReturn:
    """The reader of stdout went away (``| head``): stop quietly, exit 0."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test runner's buffer)
        pass
    raise typer.Exit(0)


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the store failed (exit 1)."""
    from handover.bootstrap import store_errors as of_the_store

    return of_the_store()


def poison_errors() -> tuple[type[BaseException], ...]:
    """Errors that one event's data causes (the store refused a value), as opposed to a store outage."""
    from handover.bootstrap import poison_errors as of_one_event

    return of_one_event()


@command(epilog="Examples:  handover init  ·  handover init --store postgresql://localhost/test  ·  "
         "handover init --example ../shared/examples/fixture.json")
def init(
    example: Annotated[
        Path | None,
        typer.Option("--example", metavar="FIXTURE", show_default=False,
                     help="Also load this fixture, but only into a new store (one with no tables yet): a store in "
                     "use is never reloaded."),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create the schema (idempotent: run it again after an upgrade)."""
    from handover.config import mask_text

    doc = read_json_file(example) if example is not None else None
    handover = open_app(store, config, schema=False)
    url = mask_text(handover.store_url)
    try:
        is_empty = getattr(handover.store, "is_empty", None)
        new = bool(is_empty()) if callable(is_empty) else False
        handover.store.init_schema()  # type: ignore[attr-defined]
        counts = handover.store.load(doc) if doc is not None and new else None  # type: ignore[attr-defined]
    except ValueError as exc:
        fail(f"{example}: {exc}", EXIT_USAGE)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    err.print(f"schema {'created' if new else 'ready'} in {url}", highlight=False)
    if counts is not None:
        err.print(f"new store: {loaded(counts)} from {example}", highlight=False)
    elif example is not None and not callable(is_empty):
        err.print(f"{example} not loaded: this store cannot tell whether it is new (`handover load` loads it)",
                  highlight=False)
    elif example is not None:
        err.print(f"{example} not loaded: the store is not new (its records stay as they are)", highlight=False)


def loaded(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items()) + " loaded"


@command(epilog="Example:  handover load ../shared/examples/fixture.json")
def load(
    fixture: Annotated[Path, typer.Argument(metavar="FIXTURE", show_default=False,
                                            help="Fixture JSON: users, course_batches, assets.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Upsert users, course batches and assets from a fixture."""
    from handover.service.json_stream import JsonStreamError, StreamUnreadable, load_fixture

    try:
        file = fixture.open("rb")
    except OSError as exc:
        fail(f"cannot read {fixture}: {exc.strerror or exc}", EXIT_USAGE)
    with file:
        handover = open_app(store, config)
        try:  # read as a stream, written in chunks in one transaction (nothing written on an error)
            counts = load_fixture(handover.store.load, file)  # type: ignore[attr-defined]
        except StreamUnreadable as exc:
            fail(f"cannot read {fixture}: {exc}", EXIT_USAGE)
        except JsonStreamError as exc:
            fail(f"{fixture} is not valid JSON: {exc}", EXIT_USAGE)
        except ValueError as exc:
            fail(f"{fixture}: {exc}", EXIT_USAGE)
        except store_errors() as exc:
            fail(f"store: {exc}", EXIT_STORE)
    err.print(loaded(counts), highlight=False)


@command(epilog="Example:  handover dump > store.json")
def dump(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Print the store as one JSON document."""
    handover = open_app(store, config)
    try:
        write_dump(handover.store.dump_sections(), sys.stdout)  # type: ignore[attr-defined]
        sys.stdout.flush()
    except BrokenPipeError:
        output_closed()
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)


@command(epilog="Examples:  handover replay events.jsonl  ·  handover replay events.jsonl --report "
         "report.jsonl  ·  handover replay events.jsonl --dry-run")
def replay(
    events: Annotated[Path, typer.Argument(metavar="EVENTS", show_default=False,
                                           help="Events, one JSON object per line (JSON Lines).")],
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE", show_default=False,
                                                help="Write one JSON result per input line.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="Report what would change; change nothing "
                                          "(the store is written in a transaction that is rolled back).")] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            metavar="N",
            help="Events per unit of work (one commit), as the worker's micro-batches; a batch that fails is "
            "processed again one event at a time. 1: each event on its own. --dry-run takes one at a time.",
        ),
    ] = REPLAY_BATCH,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Process events from a file, in order. Progress on stderr: events done, course batches and assets written."""
    try:
        source = events.open("rb")
        total = sum(1 for _ in source)
        source.seek(0)
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror or exc}", EXIT_USAGE)
    check_json_lines(events, source)
    try:
        report_file = report.open("w", encoding="utf-8") if report is not None else None
    except OSError as exc:
        fail(f"cannot write {report}: {exc.strerror or exc}", EXIT_USAGE)
    handover = open_app(store, config)
    tally: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    try:
        with ExitStack() as stack:
            stack.enter_context(source)
            if report_file is not None:
                stack.enter_context(report_file)
            factory = stack.enter_context(handover.store.preview(carry_changes=True)) if dry_run else None  # type: ignore[attr-defined]
            progress = stack.enter_context(WorkProgress("replay", "written", events=total))
            engine = handover.engine(uow_factory=factory, on_written=progress.written)
            poison = poison_errors()

            def one(line: bytes) -> Outcome:
                try:
                    return engine.process(line)
                except poison as exc:  # this line's data, not the store: report it and go on (SPEC 4)
                    return Outcome(None, "rejected", "PROCESSING_FAILED", f"{type(exc).__name__}: {exc}")

            def outcomes() -> Iterator[Outcome]:
                size = 1 if dry_run else batch_size
                while chunk := [line.rstrip(b"\r\n") for line in islice(source, size)]:
                    if len(chunk) > 1:
                        try:
                            yield from engine.process_batch(chunk)
                            continue
                        except Exception as exc:  # no ledger row of the batch was written: again one by one
                            log.warning("replay: a batch of %d events failed (%s); one at a time", len(chunk), exc)
                    yield from (one(line) for line in chunk)

            for number, outcome in enumerate(outcomes(), start=1):
                tally[outcome.outcome] += 1
                if outcome.reason:
                    tally[f"rejected: {outcome.reason}"] += 1
                changed["course_batches"] += outcome.changed_batches
                changed["assets"] += outcome.changed_assets
                if report_file is not None:
                    report_file.write(json.dumps(outcome.report(number), ensure_ascii=False) + "\n")
                progress.event_done()
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    print_summary(tally, changed, dry_run)


def check_json_lines(path: Path, source: Any) -> None:
    """Exit 2, saying what to do, when the file is one JSON document over several lines (a pretty-printed event
    or a JSON array) rather than one event per line. Any other bad line is reported per line, as SPEC 4 says."""
    first = b""
    for line in source:
        if line.strip():
            first = line
            break
    source.seek(0)
    try:
        json.loads(first)
        return
    except ValueError:
        pass
    if path.stat().st_size > 64 * 1024 * 1024:
        return  # too big to be one pretty-printed event: let the per-line report speak
    try:
        doc = json.loads(source.read())
    except ValueError:
        source.seek(0)
        return
    what, fix = (("a JSON array", f"jq -c '.[]' {path} > events.jsonl") if isinstance(doc, list)
                 else ("one JSON document", f"jq -c . {path} > events.jsonl"))
    fail(f"{path} is {what} over several lines; replay reads one event per line (JSON Lines). "
         f"Write each event on one line, e.g. `{fix}`, and replay that file.", EXIT_USAGE)


@command(epilog="Examples (after `handover replay ../shared/examples/events.jsonl`):  handover undo "
         "LP.1712750750956.0001  ·  handover undo --request req-0001")
def undo(
    mid: Annotated[str | None, typer.Argument(metavar="MID", show_default=False,
                                              help="The mid of the ownership-transfer event to undo.")] = None,
    request: Annotated[str | None, typer.Option("--request", metavar="ID", show_default=False,
                                                help="Undo every event of this API request.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Undo an ownership transfer: each change still in place is reverted, any other is a conflict (SPEC 10).
    Progress on stderr: the fields reverted so far, beside the records the transfer changed."""
    from handover.service.undo import UndoError, undo_scope

    if (mid is None) == (request is None):
        fail("give either MID or --request ID", EXIT_USAGE)
    check_text(mid or request or "", "MID" if mid is not None else "--request")
    handover = open_app(store, config)
    try:
        with handover.reader() as reader:
            scope = undo_scope(reader, mid=mid, request_id=request)
        note = (f" (of the {scope.course_batches:,} course batches and {scope.assets:,} assets the "
                f"{'event' if mid is not None else 'request'} changed)")
        with WorkProgress("undo", "reverted", fields=True, note=note) as progress:
            undoer = handover.undoer(on_written=progress.written)
            result = undoer.undo_event(mid) if mid is not None else undoer.undo_request(request or "")
    except UndoError as exc:
        fail(str(exc), EXIT_USAGE)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    for event in result.events:
        err.print(f"{event.mid}: {event.message()}", highlight=False)
    if request is not None:
        err.print(f"{request}: {result.message()}", highlight=False)
    print(json.dumps(result.to_json(), ensure_ascii=False))


@command("audit", epilog="Examples:  handover audit --request req-0001 --format csv > audit.csv  ·  "
         "handover audit --mid LP.1712750750956.0001 | head")
def audit_export(
    request: Annotated[str | None, typer.Option("--request", metavar="ID", show_default=False,
                                                help="The API request whose changes to export.")] = None,
    mid: Annotated[str | None, typer.Option("--mid", metavar="MID", show_default=False,
                                            help="The event whose changes to export.")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="jsonl|csv", help="Output format.")] = "jsonl",
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export the audit trail of a request or an event (its undo included), oldest change first, to stdout: when
    (at), why (action: ownership-transfer, delete-user, undo), who (action_by: the request's admin), then the
    record, field, before and after. In CSV a text is written as it is, a list or an object as JSON."""
    import csv

    from handover.bootstrap import request_log
    from handover.service.audit_trail import EXPORT_COLUMNS, csv_cells, export, known

    if (mid is None) == (request is None):
        fail("give either --request ID or --mid MID", EXIT_USAGE)
    if fmt not in ("jsonl", "csv"):
        fail(f"--format must be jsonl or csv, not {fmt!r}", EXIT_USAGE)
    check_text(mid or request or "", "--mid" if mid is not None else "--request")
    handover = open_app(store, config)
    _, history = request_log(handover)

    def action_by(request_id: str) -> str | None:
        summary = history.summary(request_id) if history is not None else None
        return summary.action_by if summary is not None else None

    try:
        found = known(handover.store, mid=mid, request_id=request)  # type: ignore[arg-type]
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    if not found and (request is None or history is None or history.summary(request) is None):
        fail(f"no event {mid} in the ledger" if mid is not None else f"no request {request} in the store",
             EXIT_USAGE)
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    count = 0
    try:
        if writer is not None:
            writer.writerow(EXPORT_COLUMNS)
        rows = export(
            handover.store,  # type: ignore[arg-type]
            mid=mid,
            request_id=request,
            page_size=handover.settings["page_size"],
            with_undo=True,
            action_by=action_by,
        )
        for row in rows:
            if writer is not None:
                writer.writerow(csv_cells(row))
            else:
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        sys.stdout.flush()
    except BrokenPipeError:
        output_closed()
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    err.print(f"{count} audit rows", highlight=False)


@command("config", epilog="Example:  handover config --config user-ownership-transfer.conf")
def show_config(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Print the effective settings as JSON: each value with its source (default, file, environment
    variable), the files and how each was read, keys not read, warnings. Secrets are masked."""
    import os

    from handover.bootstrap import DEFAULT_STORE, store_url
    from handover.config import config_paths_from_env, load_settings, mask_text

    try:
        settings = load_settings(config or config_paths_from_env(os.environ) or None)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    doc = settings.describe()
    origin = "option --store" if store else "environment HANDOVER_STORE" if os.environ.get("HANDOVER_STORE") else None
    doc["store"] = {"value": mask_text(store_url(store)), "source": origin or "default", "default": DEFAULT_STORE}
    print(json.dumps(doc, indent=1, ensure_ascii=False))


def check_port(host: str, port: int) -> None:
    """Exit 2 when ``host:port`` cannot be listened on (another server has it), naming what to change."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        fail(f"--host {host}: {exc.strerror or exc}", EXIT_USAGE)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port is free
        try:
            probe.bind(address)
        except OSError as exc:
            fail(f"port {port} on {host} is taken ({exc.strerror or exc}): is handover already running? Stop it, "
                 "or choose another port with --port (HANDOVER_PORT for scripts/run.sh)", EXIT_USAGE)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@command(epilog="Examples:  handover serve  ·  handover serve --port 8080  ·  HANDOVER_AUTH_MODE=none "
         "handover serve (local use only)")
def serve(
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", min=1, max=65535,
                                      help="Port to listen on.")] = 8000,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", metavar="", help="Without Kafka: do not run the queue's worker in this process (run `handover "
        "queue-worker` beside it; as queue.worker.in_process = false).")] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", min=1, max=MAX_API_WORKERS,
        help="Serving processes (setting api.workers, default 1); with more than one, the queue's worker runs in "
             "the parent process.")] = None,
) -> None:
    """Run the HTTP API and the admin console (/admin); without Kafka it also runs the worker of the store's
    event queue in this process (unless --no-worker or queue.worker.in_process = false: then `handover
    queue-worker` processes the queue). A port already taken is refused before anything else is done (exit 2).

    With --workers N > 1, N processes serve and this one runs the queue's worker (entrypoints/serve_workers.py)."""
    import signal

    import uvicorn

    from handover.bootstrap import api_parts, settings_of

    check_port(host, port)
    try:
        processes = workers or settings_of(config)["api.workers"]
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    preset = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if preset and not (os.path.isdir(preset) and os.access(preset, os.W_OK | os.X_OK)):
        fail(f"PROMETHEUS_MULTIPROC_DIR {preset}: not a directory this process can write to", EXIT_USAGE)
    if processes > 1 and not preset:  # before prometheus_client is imported
        metrics_dir = tempfile.mkdtemp(prefix="handover-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, True)  # also when serve fails below
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    from handover.entrypoints.api import create_app
    from handover.entrypoints.serve_logging import logging_off_the_event_loop
    from handover.entrypoints.serve_workers import FACTORY, WORKER_POLL_S, settle_garbage_collector

    handover = open_app(store, config)
    try:
        parts = api_parts(handover, **({"poll_seconds": WORKER_POLL_S, "linger_seconds": WORKER_POLL_S}
                                       if processes > 1 else {}))
        separate = parts.worker is not None and (no_worker or not handover.settings["queue.worker.in_process"])
        if separate:
            parts.worker = None  # `handover queue-worker` processes the queue (/health then checks no worker)
        api = create_app(handover, parts)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    if handover.settings["auth.mode"] == "none":
        err.print(
            "[bold red]WARNING: authentication is OFF (auth.mode=none): anyone who can reach "
            f"{host}:{port} can submit ownership transfers. Use it only for local work.[/bold red]",
            highlight=False,
        )
    sink = "Kafka" if parts.worker is None else "the store's event queue (worker in this process)"
    if separate:
        sink = "the store's event queue (no worker in this process: run `handover queue-worker`)"
    err.print(f"serving on http://{host}:{port} (store {handover.store_url}; events go to {sink})", highlight=False)
    err.print(f"console: http://{host}:{port}/admin  API docs: http://{host}:{port}/docs", highlight=False)
    if processes > 1:
        err.print(f"{processes} serving processes (api.workers)", highlight=False)
    if parts.worker is not None:
        try:
            parts.worker.start()
        except store_errors() as exc:
            fail(f"store: {exc} (has `handover init` been run?)", EXIT_STORE)
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal after its shutdown
        signal.signal(stop_signal, _exit_cleanly)
    # "auto": uvloop and httptools (uvicorn[standard], a dependency) when installed, else asyncio and h11
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "info", "loop": "auto", "http": "auto",
                               "log_config": None}
    try:
        with logging_off_the_event_loop():
            if processes == 1:
                settle_garbage_collector()
                uvicorn.run(api, **options)
            else:  # the serving processes find the store and the settings files in the environment
                os.environ["HANDOVER_STORE"] = handover.store_url
                if config:
                    os.environ["HANDOVER_CONFIG"] = os.pathsep.join(str(entry) for entry in config)
                uvicorn.run(FACTORY, factory=True, workers=processes, **options)
    finally:
        if parts.worker is not None:
            parts.worker.stop()
        close = getattr(parts.sink, "close", None)
        if callable(close):
            close()


@command("queue-worker", epilog="Example:  handover serve --no-worker & handover queue-worker")
def queue_worker(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    poll: Annotated[float, typer.Option("--poll", metavar="SECONDS", min=0.01,
                                        help="How often an idle worker looks for new events, and how long "
                                             "it waits after a batch that was not full.")] = 0.2,
) -> None:
    """Process the embedded store's event queue (what `handover serve` does in its own process unless given
    --no-worker), until SIGTERM/SIGINT: the events in hand are finished first. Its own process leaves the
    server's core to the requests."""
    import signal
    import threading

    from handover.bootstrap import api_parts

    handover = open_app(store, config)
    if handover.settings["kafka.broker-servers"]:
        fail("events go to Kafka (kafka.broker-servers is set): run `handover worker`", EXIT_USAGE)
    try:
        parts = api_parts(handover, poll_seconds=poll, linger_seconds=poll)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    assert parts.worker is not None
    stop = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: stop.set())
    try:
        parts.worker.start()
    except store_errors() as exc:
        fail(f"store: {exc} (has `handover init` been run?)", EXIT_STORE)
    err.print(f"processing the event queue of {handover.store_url}", highlight=False)
    try:
        while not stop.wait(1.0):
            if not parts.worker.alive:
                fail("the queue worker stopped", EXIT_STORE)
    finally:
        parts.worker.stop()


@command(epilog="Example:  handover worker --config user-pii-data-updater.conf --config user-ownership-transfer.conf")
def worker(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Consume the Kafka topics until stopped (SIGTERM/SIGINT: finish the events in hand, commit, exit 0)."""
    from handover.entrypoints import run_worker as kafka_worker

    handover = open_app(store, config)
    try:
        code = kafka_worker.run(handover)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # the metrics port is taken
        fail(f"metrics.port {handover.settings['metrics.port']}: {exc.strerror or exc}", EXIT_USAGE)
    raise typer.Exit(code)


@command(epilog="Example:  handover publish ../shared/examples/events.jsonl --config handover.conf")
def publish(
    events: Annotated[Path, typer.Argument(metavar="EVENTS", show_default=False,
                                           help="Events, one JSON object per line.")],
    config: ConfigOpt = None,
) -> None:
    """Send events to their Kafka topic (by edata.action), keyed by the user each is about."""
    from handover.bootstrap import kafka_sink
    from handover.service.ports import PublishError

    try:
        lines = [line.rstrip(b"\r\n") for line in events.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror or exc}", EXIT_USAGE)
    handover = open_app(None, config, schema=False)
    try:
        sink = kafka_sink(handover)
        counts = sink.publish_raw(lines)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except PublishError as exc:
        fail(f"kafka: {exc}", EXIT_STORE)
    for topic, count in counts.items():
        err.print(f"{count} events to {topic}", highlight=False)


@command(epilog="Examples:  handover redrive  ·  handover redrive --from-file failed.jsonl")
def redrive(
    from_file: Annotated[
        Path | None, typer.Option("--from-file", metavar="FILE", show_default=False,
                                  help="Failed-topic records or events, one per line.")
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Process failed events again: from the failed topic (what it gained since the last redrive) or a file."""
    from handover.bootstrap import kafka_errors
    from handover.bootstrap import redrive as redriving

    if from_file is not None and not from_file.is_file():
        fail(f"cannot read {from_file}: no such file", EXIT_USAGE)
    handover = open_app(store, config)
    try:
        counts = redriving(handover, from_file)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read {from_file}: {exc.strerror or exc}", EXIT_USAGE)
    except kafka_errors() as exc:
        fail(f"kafka: {exc}", EXIT_STORE)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    table = Table(title="redrive")
    table.add_column("")
    table.add_column("count", justify="right")
    for key in ("applied", "rejected", "duplicate", "failed again", "unreadable"):
        table.add_row(key, str(counts.get(key, 0)))
    for key in sorted(k for k in counts if k.startswith("rejected: ")):
        table.add_row("  " + key.removeprefix("rejected: "), str(counts[key]))
    err.print(table, soft_wrap=False)  # a table is laid out to the width (its title centred)
    if counts.get("failed again"):
        raise typer.Exit(EXIT_STORE)


def read_json_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", EXIT_USAGE)
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"{path} is not valid JSON: {exc}", EXIT_USAGE)


class WorkProgress:
    """Progress of long work on stderr, by what was written (``written(course_batches, assets)``, the service's
    ``RecordsWritten``: records for a replay, fields for an undo) and, for a replay, events done: a live line on
    a terminal (rich), else a plain line every ``PROGRESS_EVERY`` seconds from a timer thread (so a line comes
    while one long write runs). ``note``: what the work covers, when known (an undo: the records to revert)."""

    def __init__(self, name: str, verb: str, *, events: int | None = None, fields: bool = False,
                 note: str = "") -> None:
        self.name, self.verb, self.note = name, verb, note
        self.units = ("course batch fields", "asset fields") if fields else ("course batches", "assets")
        self.events_total = events
        self.events = self.batches = self.assets = 0
        self._started = time.monotonic()
        self._live: Progress | None = None
        self._task: TaskID | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> WorkProgress:
        if err.is_terminal:
            columns: list[Any] = [TextColumn("{task.description}")]
            if self.events_total is not None:
                columns += [BarColumn(), TextColumn("events {task.completed}/{task.total}")]
            columns += [TextColumn("{task.fields[records]}"), TimeElapsedColumn()]
            self._live = Progress(*columns, console=err, transient=True)
            self._live.start()
            self._task = self._live.add_task(self.name, total=self.events_total, records=self.records())
        else:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._live is not None:
            self._live.stop()

    def written(self, batches: int, assets: int) -> None:
        self.batches += batches
        self.assets += assets
        if self._live is not None and self._task is not None:
            self._live.update(self._task, records=self.records())

    def event_done(self) -> None:
        self.events += 1
        if self._live is not None and self._task is not None:
            self._live.update(self._task, advance=1, records=self.records())

    def records(self) -> str:
        return f"{self.batches:,} {self.units[0]}, {self.assets:,} {self.units[1]} {self.verb}{self.note}"

    def line(self) -> str:
        elapsed = int(time.monotonic() - self._started)
        events = f"{self.events:,}/{self.events_total:,} events, " if self.events_total is not None else ""
        return f"{self.name}: {events}{self.records()}, {elapsed // 60}:{elapsed % 60:02d} elapsed"

    def _tick(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY):
            err.print(self.line(), highlight=False, soft_wrap=True)


def print_summary(tally: Counter[str], changed: Counter[str], dry_run: bool) -> None:
    table = Table(title="replay (dry run: nothing changed)" if dry_run else "replay")
    table.add_column("")
    table.add_column("count", justify="right")
    for key in ("applied", "rejected", "duplicate"):
        table.add_row(key, str(tally.get(key, 0)))
    for key in sorted(k for k in tally if k.startswith("rejected: ")):
        table.add_row("  " + key.removeprefix("rejected: "), str(tally[key]))
    table.add_row("course batches changed", str(changed["course_batches"]))
    table.add_row("assets changed", str(changed["assets"]))
    err.print(table, soft_wrap=False)  # a table is laid out to the width (its title centred)


def write_dump(sections: Iterator[tuple[str, Any]], out: TextIO) -> None:
    """SPEC 4's dump document, written record by record (indent 1) so that memory stays flat."""
    out.write("{")
    for index, (name, records) in enumerate(sections):
        out.write(("," if index else "") + f'\n {json.dumps(name)}: [')
        first = True
        for record in records:
            text = json.dumps(record, ensure_ascii=False, indent=1).replace("\n", "\n  ")
            out.write(("" if first else ",") + "\n  " + text)
            first = False
        out.write("\n ]" if not first else "]")
    out.write("\n}\n")


# --- handover report ... (SPEC 12) ----------------------------------------------------------------------

report_app = typer.Typer(cls=Group, help="Reports read from the store (SPEC 12).", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("deleted-owners", cls=Command,
                    epilog="Examples:  handover report deleted-owners -o org-1 > owners.csv  ·  "
                    "handover report deleted-owners --format jsonl")
def report_deleted_owners(
    organisation: Annotated[str | None, typer.Option(
        "--organisation", "-o", metavar="ORG", show_default=False,
        help="Only the deleted users of this root organisation (default: every one).")] = None,
    format: Annotated[str, typer.Option("--format", metavar="csv|jsonl",
                                        help="csv (with a header) or jsonl.")] = "csv",
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The users marked deleted who still own course batches (creator or mentor, statuses a transfer moves) or
    configured assets: one row per record to stdout, a summary to stderr."""
    import os

    from handover.entrypoints.cli_report import FORMATS, write_deleted_owners
    from handover.service.requests import Invalid, NotFound, ServiceError

    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {format!r}", EXIT_USAGE)
    if organisation is not None:
        check_text(organisation, "organisation")
        if not organisation.strip():  # the service's words are the API's ("authentication is off ..."): not here
            fail("--organisation is empty: give a root organisation id, or leave it out for every organisation",
                 EXIT_USAGE)
    report = open_app(store, config).deleted_owners()
    try:
        org = report.organisation_for(None, organisation) if organisation is not None else None
        written = write_deleted_owners(report, org, format, sys.stdout)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (Invalid, NotFound) as exc:
        fail(exc.message, EXIT_USAGE)
    except ServiceError as exc:  # the store failed: its own words too (the API gives only the message)
        cause = str(getattr(exc.__cause__, "orig", None) or exc.__cause__ or "").strip().splitlines()
        fail(exc.message + (f" {cause[0][:300]}" if cause else ""), EXIT_STORE)
    err.print(written.summary(org), highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
