"""The ``handover`` command (SPEC 4). Each command only wires the bootstrap to a service call.

Exit codes: 0 success (also when events were rejected), 2 bad usage or unreadable input, 1 store failure.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from handover.bootstrap import App, bootstrap
from handover.config import ConfigError
from handover.service.ports import Outcome

app = typer.Typer(
    name="handover",
    help="Sunbird asset ownership transfer and PII clean-up.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (sqlite:///..., postgresql://..., sunbird://); env HANDOVER_STORE."),
]
ConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        help="Settings file (HOCON or JSON), SPEC 7; repeat it to give both upstream jobs' files. A prefix "
        "inquiry=, lern= or handover= names the file's layout (else recognised from its content). "
        "Env HANDOVER_CONFIG: entries separated by ':'.",
    ),
]

EXIT_STORE = 1
EXIT_USAGE = 2


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def check_text(value: str, name: str) -> None:
    """Exit 2 when an argument cannot be an id in any store (NUL, a byte that is not UTF-8, over the length
    limit): a clear usage error, never a store error."""
    from handover.domain.text import id_problem, printable

    problem = id_problem(value)
    if problem is not None:
        fail(f"{name} {printable(value)[:80]!r} {problem}", EXIT_USAGE)


def open_app(store: str | None, config: list[str] | None) -> App:
    try:
        return bootstrap(store, config)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except Exception as exc:  # a bad store URL or an adapter that cannot start
        fail(f"store: {exc}", EXIT_STORE)


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the store failed (exit 1)."""
    from handover.bootstrap import store_errors as of_the_store

    return of_the_store()


def poison_errors() -> tuple[type[BaseException], ...]:
    """Errors that one event's data causes (the store refused a value), as opposed to a store outage."""
    from handover.bootstrap import poison_errors as of_one_event

    return of_one_event()


@app.command()
def init(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Create the schema (idempotent)."""
    handover = open_app(store, config)
    try:
        handover.store.init_schema()  # type: ignore[attr-defined]
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    err.print(f"schema ready in {handover.store_url}", highlight=False)


@app.command()
def load(
    fixture: Annotated[Path, typer.Argument(help="Fixture JSON: users, course_batches, assets.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Upsert users, course batches and assets from a fixture."""
    doc = read_json_file(fixture)
    handover = open_app(store, config)
    try:
        counts = handover.store.load(doc)  # type: ignore[attr-defined]
    except ValueError as exc:
        fail(f"{fixture}: {exc}", EXIT_USAGE)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    err.print(", ".join(f"{n} {k}" for k, n in counts.items()) + " loaded", highlight=False)


@app.command()
def dump(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Print the store as one JSON document."""
    handover = open_app(store, config)
    try:
        write_dump(handover.store.dump_sections(), sys.stdout)  # type: ignore[attr-defined]
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)


@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="Events, one JSON object per line.")],
    report: Annotated[Path | None, typer.Option("--report", help="Write one JSON result per input line.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing.")] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Process events from a file, in order."""
    try:
        source = events.open("rb")
        total = sum(1 for _ in source)
        source.seek(0)
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror or exc}", EXIT_USAGE)
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
            engine = handover.engine(uow_factory=factory)
            progress = stack.enter_context(progress_bar(total))
            task = progress.add_task("replay", total=total) if progress is not None else None
            poison = poison_errors()
            for number, line in enumerate(source, start=1):
                try:
                    outcome = engine.process(line.rstrip(b"\r\n"))
                except poison as exc:  # this line's data, not the store: report it and go on (SPEC 4)
                    outcome = Outcome(None, "rejected", "PROCESSING_FAILED", f"{type(exc).__name__}: {exc}")
                tally[outcome.outcome] += 1
                if outcome.reason:
                    tally[f"rejected: {outcome.reason}"] += 1
                changed["course_batches"] += outcome.changed_batches
                changed["assets"] += outcome.changed_assets
                if report_file is not None:
                    report_file.write(json.dumps(outcome.report(number), ensure_ascii=False) + "\n")
                if progress is not None and task is not None:
                    progress.advance(task)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    print_summary(tally, changed, dry_run)


@app.command()
def undo(
    mid: Annotated[str | None, typer.Argument(help="The mid of the ownership-transfer event to undo.")] = None,
    request: Annotated[str | None, typer.Option("--request", help="Undo every event of this API request.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Undo an ownership transfer: each change still in place is reverted, any other is a conflict (SPEC 10)."""
    from handover.service.undo import UndoError

    if (mid is None) == (request is None):
        fail("give either MID or --request ID", EXIT_USAGE)
    check_text(mid or request or "", "MID" if mid is not None else "--request")
    handover = open_app(store, config)
    try:
        undoer = handover.undoer()
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


@app.command("audit")
def audit_export(
    request: Annotated[str | None, typer.Option("--request", help="The API request whose changes to export.")] = None,
    mid: Annotated[str | None, typer.Option("--mid", help="The event whose changes to export.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export the audit trail of a request or an event (its undo included), oldest change first, to stdout."""
    import csv

    from handover.service.audit_trail import EXPORT_COLUMNS, csv_cells, export

    if (mid is None) == (request is None):
        fail("give either --request ID or --mid MID", EXIT_USAGE)
    if fmt not in ("jsonl", "csv"):
        fail(f"--format must be jsonl or csv, not {fmt!r}", EXIT_USAGE)
    check_text(mid or request or "", "--mid" if mid is not None else "--request")
    handover = open_app(store, config)
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    count = 0
    try:
        rows = export(
            handover.store,  # type: ignore[arg-type]
            mid=mid,
            request_id=request,
            page_size=handover.settings["page_size"],
        )
        for row in rows:
            if writer is not None:
                writer.writerow(csv_cells(row))
            else:
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    err.print(f"{count} audit rows", highlight=False)


@app.command("config")
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


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the HTTP API; without Kafka it also runs the worker of the store's event queue in this process."""
    import signal

    import uvicorn

    from handover.bootstrap import api_parts
    from handover.entrypoints.api import create_app

    handover = open_app(store, config)
    try:
        parts = api_parts(handover)
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
    err.print(f"serving on http://{host}:{port} (store {handover.store_url}; events go to {sink})", highlight=False)
    if parts.worker is not None:
        try:
            parts.worker.start()
        except store_errors() as exc:
            fail(f"store: {exc} (has `handover init` been run?)", EXIT_STORE)
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal after its shutdown
        signal.signal(stop_signal, _exit_cleanly)
    try:
        uvicorn.run(api, host=host, port=port, log_level="info")
    finally:
        if parts.worker is not None:
            parts.worker.stop()
        close = getattr(parts.sink, "close", None)
        if callable(close):
            close()


@app.command()
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


@app.command()
def publish(
    events: Annotated[Path, typer.Argument(help="Events, one JSON object per line.")],
    config: ConfigOpt = None,
) -> None:
    """Send events to their Kafka topic (by edata.action), keyed by the user each is about."""
    from handover.bootstrap import kafka_sink
    from handover.service.ports import PublishError

    try:
        lines = [line.rstrip(b"\r\n") for line in events.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror or exc}", EXIT_USAGE)
    handover = open_app(None, config)
    try:
        sink = kafka_sink(handover)
        counts = sink.publish_raw(lines)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except PublishError as exc:
        fail(f"kafka: {exc}", EXIT_STORE)
    for topic, count in counts.items():
        err.print(f"{count} events to {topic}", highlight=False)


@app.command()
def redrive(
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="Failed-topic records or events, one per line.")
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
    err.print(table)
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


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(total: int) -> Any:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""
    if not err.is_terminal:
        return _NoProgress()
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err, transient=True,
    )


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
    err.print(table)


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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
