"""The ``handover`` command as a new user meets it (issue 14 points 5 and 7): an uninitialised store, output cut
short by ``| head``, the audit export (an event's undo rows, readable CSV with when / why / who), ``--version``,
help without artifacts and with examples, a pretty-printed event file, and progress by records written for
``replay`` and ``undo`` (a line every few seconds on a pipe, a live line on a terminal)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import SqlRequestLog
from handover.entrypoints import cli
from handover.entrypoints.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()
TRANSFER_MID = "LP.1712750750956.0001"  # request req-0001: everything of u-ann goes to u-ravi
TRANSFER_LINE = (EXAMPLES / "events.jsonl").read_text().splitlines()[1]
MANY = 3000  # extra assets of u-ann: enough output to fill a pipe, enough writes to see progress


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout, result.stderr


def one_line(text: str) -> str:
    return " ".join(text.split())


def new_store(tmp_path: Path, extra_assets: int = 0) -> str:
    """A store with the shared fixture (and ``extra_assets`` more Questions of u-ann)."""
    store = f"sqlite:///{tmp_path / 'handover.db'}"
    fixture = json.loads((EXAMPLES / "fixture.json").read_text())
    template = next(a for a in fixture["assets"] if a["createdBy"] == "u-ann")
    fixture["assets"] += [{**template, "identifier": f"do_many_{n:05d}"} for n in range(extra_assets)]
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(fixture))
    run("init", "--store", store)
    run("load", str(path), "--store", store)
    return store


def transfer_file(tmp_path: Path) -> Path:
    path = tmp_path / "transfer.jsonl"
    path.write_text(TRANSFER_LINE + "\n")
    return path


# --- point 7: messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["dump"], ["replay", str(EXAMPLES / "events.jsonl")], ["undo", TRANSFER_MID], ["audit", "--mid", TRANSFER_MID],
     ["load", str(EXAMPLES / "fixture.json")]],
)
def test_an_uninitialised_store_says_run_handover_init(tmp_path: Path, args: list[str]) -> None:
    store = f"sqlite:///{tmp_path / 'empty.db'}"
    out, err = run(*args, "--store", store, code=1)
    assert out == ""
    text = one_line(err)
    assert f"the store {store} has no handover schema yet" in text
    assert f"run `handover init --store {store}` first" in text
    assert "sqlalchemy" not in text.lower() and "SELECT" not in text


def test_init_loads_an_example_only_into_a_new_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'handover.db'}"
    fixture = str(EXAMPLES / "fixture.json")
    _, err = run("init", "--example", fixture, "--store", store)
    # each message one whole line, however long (a log file or a pipe is not wrapped at 80 columns)
    assert err.splitlines() == [f"schema created in {store}",
                                f"new store: 5 users, 3 course_batches, 6 assets loaded from {fixture}"], err
    run("replay", str(transfer_file(tmp_path)), "--store", store)
    after_transfer = run("dump", "--store", store)[0]

    _, err = run("init", "--example", fixture, "--store", store)  # a second start: nothing put back

    assert "schema ready" in err and "not loaded: the store is not new" in one_line(err)
    assert run("dump", "--store", store)[0] == after_transfer
    _, err = run("init", "--example", str(tmp_path / "missing.json"), "--store", store, code=2)
    assert "cannot read" in err


def test_output_cut_short_by_head_ends_quietly(tmp_path: Path) -> None:
    store = new_store(tmp_path, MANY)
    run("replay", str(transfer_file(tmp_path)), "--store", store)
    for args in (["audit", "--mid", TRANSFER_MID], ["audit", "--request", "req-0001", "--format", "csv"], ["dump"]):
        head = subprocess.run(
            f"{sys.executable} -m handover.entrypoints.cli {' '.join(args)} --store {store} | head -n 2",
            shell=True, capture_output=True, text=True, timeout=120, executable="/bin/bash",
        )
        assert len(head.stdout.splitlines()) == 2, args
        assert "Broken pipe" not in head.stderr and "error" not in head.stderr, (args, head.stderr)
        piped = subprocess.run(
            f"{sys.executable} -m handover.entrypoints.cli {' '.join(args)} --store {store} | head -n 1 >/dev/null;"
            " echo ${PIPESTATUS[0]}",
            shell=True, capture_output=True, text=True, timeout=120, executable="/bin/bash",
        )
        assert piped.stdout.strip() == "0", (args, piped.stderr)


def test_audit_of_an_event_has_its_undo_rows_and_csv_says_when_why_who(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    events = [json.loads(line) for line in (EXAMPLES / "events.jsonl").read_text().splitlines()[1:2]]
    SqlRequestLog(SqlStore(store)).record("req-0001", "u-admin", events)  # as the API records a request
    run("replay", str(transfer_file(tmp_path)), "--store", store)
    run("undo", TRANSFER_MID, "--store", store)

    out, err = run("audit", "--mid", TRANSFER_MID, "--store", store)

    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["mid"] for r in rows] == [TRANSFER_MID] * 11 + ["undo:" + TRANSFER_MID] * 11
    assert "22 audit rows" in err
    out, _ = run("audit", "--mid", TRANSFER_MID, "--format", "csv", "--store", store)
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0])[:3] == ["at", "action", "action_by"]
    assert {(r["action"], r["action_by"]) for r in table} == {("ownership-transfer", "u-admin"), ("undo", "u-admin")}
    creator = next(r for r in table if r["record_key"] == "do_course1/b-101" and r["field"] == "createdby")
    assert (creator["before"], creator["after"]) == ("u-ann", "u-ravi")
    assert '"""' not in out
    mentors = next(r for r in table if r["record_key"] == "do_course1/b-101" and r["field"] == "mentors")
    assert json.loads(mentors["before"]) == ["u-ann", "u-meera"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT.*", r["at"]) for r in table)


def test_serve_refuses_a_port_already_taken_before_anything_else(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        store = tmp_path / "never.db"
        _, err = run("serve", "--port", str(port), "--store", f"sqlite:///{store}", code=2)
    assert f"port {port} on 127.0.0.1 is taken" in one_line(err) and "HANDOVER_PORT" in err
    assert not store.exists()  # the store was not even opened


@pytest.mark.parametrize(("port", "words"), [("70000", "less than or equal to 65535"),
                                             ("0", "greater than or equal to 1")])
def test_serve_refuses_a_port_out_of_range_as_a_usage_error(tmp_path: Path, port: str, words: str) -> None:
    # 70000 passed the port check (getaddrinfo wraps it) and then crashed uvicorn with an OverflowError
    store = tmp_path / "never.db"
    _, err = run("serve", "--port", port, "--store", f"sqlite:///{store}", code=2)
    assert "Invalid value for '--port'" in one_line(err) and words in one_line(err), err
    assert not store.exists()


def test_version() -> None:
    from importlib.metadata import version

    out, _ = run("--version")
    assert out.strip() == f"handover {version('handover')}"


COMMANDS = [[c.name or c.callback.__name__] for c in app.registered_commands if c.callback is not None]
# the commands of sub-apps (handover report ...) too
COMMANDS += [[group.name, c.name or c.callback.__name__] for group in app.registered_groups
             if group.typer_instance is not None and group.name is not None
             for c in group.typer_instance.registered_commands if c.callback is not None]


@pytest.mark.parametrize("command", [[], *COMMANDS])
def test_help_has_no_type_artifacts_and_gives_examples(command: list[str]) -> None:
    out, _ = run(*command, "--help")
    assert "<bool>" not in out and "<str>" not in out and "<path>" not in out and "{" not in out, out
    if command:
        assert "Example" in out, out
    if not command:
        assert "--version" in out
    if command == ["audit"]:
        assert "[default: jsonl]" in out
    if command == ["load"]:
        assert "Usage: handover load [OPTIONS] FIXTURE" in out


GROUPS = [[], *[[group.name] for group in app.registered_groups if group.name is not None]]


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_lists_its_commands_without_artifacts_each_help_on_one_line(group: list[str]) -> None:
    """``handover --help`` and ``handover report --help``: no ``<bool>`` beside ``--help``, and each command's
    summary is its docstring's lines joined (typer kept their line breaks: "... or" then "configured assets")."""
    result = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "400"})  # wide enough that nothing wraps
    assert result.exit_code == 0, result.stdout
    assert "<bool>" not in result.stdout, result.stdout
    typer_app = app if not group else next(g.typer_instance for g in app.registered_groups if g.name == group[0])
    assert typer_app is not None
    commands = [c for c in typer_app.registered_commands if c.callback is not None]
    assert commands
    for c in commands:
        summary = one_line((c.callback.__doc__ or "").split("\n\n")[0])
        name = c.name or c.callback.__name__
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"│ {name} "))
        assert summary in row, (summary, row)


@pytest.mark.parametrize(
    ("document", "what", "fix"),
    [({"mid": "LP.1", "edata": {"action": "ownership-transfer"}}, "one JSON document", "jq -c ."),
     ([{"mid": "LP.1"}, {"mid": "LP.2"}], "a JSON array", "jq -c '.[]'")],
)
def test_a_pretty_printed_event_file_is_refused_with_what_to_do(
    tmp_path: Path, document: object, what: str, fix: str
) -> None:
    store = new_store(tmp_path)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(document, indent=2))
    report = tmp_path / "report.jsonl"

    _, err = run("replay", str(path), "--report", str(report), "--store", store, code=2)

    text = one_line(err)
    assert f"{path} is {what} over several lines; replay reads one event per line (JSON Lines)" in text
    assert fix in text
    assert "MALFORMED_EVENT" not in err and not report.exists()


def test_a_bad_line_among_good_ones_is_still_reported_per_line(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_text(TRANSFER_LINE + "\n{not json\n")
    _, err = run("replay", str(path), "--store", store)
    assert "MALFORMED_EVENT" in err


# --- point 5: progress by records written ---------------------------------------------------------------


def test_progress_lines_on_a_pipe_for_replay_and_undo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = new_store(tmp_path, MANY)
    monkeypatch.setattr(cli, "PROGRESS_EVERY", 0.001)  # every few seconds in use; at once here

    _, err = run("replay", str(transfer_file(tmp_path)), "--store", store)

    lines = [line for line in err.splitlines() if line.startswith("replay: ")]
    assert lines, err
    assert all(re.fullmatch(r"replay: [01]/1 events, [\d,]+ course batches, [\d,]+ assets written, \d+:\d\d elapsed",
                            line) for line in lines), lines
    counts = [int(re.search(r"([\d,]+) assets", line).group(1).replace(",", "")) for line in lines]  # type: ignore[union-attr]
    assert counts == sorted(counts) and counts[-1] <= MANY + 4

    _, err = run("undo", TRANSFER_MID, "--store", store)

    lines = [line for line in err.splitlines() if line.startswith("undo: ")]
    assert lines, err
    total = f"{MANY + 4:,}"  # the 4 assets of u-ann in the fixture, and the extra ones
    pattern = (rf"undo: [\d,]+ course batch fields, [\d,]+ asset fields reverted \(of the 2 course batches and "
               rf"{total} assets the event changed\), \d+:\d\d elapsed")
    assert all(re.fullmatch(pattern, line) for line in lines), lines


def test_live_progress_on_a_terminal_counts_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = new_store(tmp_path, MANY)
    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=160))

    run("replay", str(transfer_file(tmp_path)), "--store", store)

    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "events 1/1" in shown or "events 0/1" in shown
    assert re.search(r"[\d,]+ course batches, [\d,]+ assets written", shown), shown[-2000:]
    assert "assets changed" in shown  # the summary table follows


def test_audit_of_something_unknown_is_a_usage_error_and_a_known_request_without_changes_is_not(
    tmp_path: Path,
) -> None:
    store = new_store(tmp_path)
    run("replay", str(transfer_file(tmp_path)), "--store", store)
    events = [json.loads(line) for line in (EXAMPLES / "events.jsonl").read_text().splitlines()[1:2]]
    SqlRequestLog(SqlStore(store)).record("req-queued", "u-admin", [{**events[0], "mid": "LP.queued"}])

    _, err = run("audit", "--mid", "LP.nope", "--store", store, code=2)
    assert "no event LP.nope in the ledger" in one_line(err)
    _, err = run("audit", "--request", "nope", "--format", "csv", "--store", store, code=2)
    assert "no request nope in the store" in one_line(err)

    out, err = run("audit", "--request", "req-queued", "--store", store)  # recorded, not processed yet
    assert (out, "0 audit rows" in err) == ("", True)
    out, err = run("audit", "--mid", TRANSFER_MID, "--store", store)
    assert len(out.splitlines()) == 11 and "11 audit rows" in err
