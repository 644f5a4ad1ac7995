"""``handover undo`` and ``handover audit`` on the shared examples (SPEC 10)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from typer.testing import CliRunner

from handover.entrypoints.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()
DELETE_MID = "LP.1712750750958.0003"  # the first line of events.jsonl: a delete-user event
TRANSFER_MID = "LP.1712750750956.0001"  # request req-0001: Ann's batches and assets go to Ravi


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def prepared(store: str, events: Path) -> None:
    run("init", "--store", store)
    run("load", str(EXAMPLES / "fixture.json"), "--store", store)
    run("replay", str(events), "--store", store)


def test_undo_of_a_request_gives_back_the_store_before_it(store_url: str, tmp_path: Path) -> None:
    first_line = tmp_path / "delete-only.jsonl"
    first_line.write_text((EXAMPLES / "events.jsonl").read_text().splitlines()[0] + "\n")
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    prepared(reference, first_line)
    prepared(store_url, EXAMPLES / "events.jsonl")
    assert run("dump", "--store", store_url)[0] != run("dump", "--store", reference)[0]

    out, err = run("undo", "--request", "req-0001", "--store", store_url)

    result = json.loads(out)
    assert result["conflicts"] == 0 and result["reverted"] == 11
    assert err.splitlines() == [f"{TRANSFER_MID}: 11 changes reverted, 0 conflicts",
                                "req-0001: 11 changes reverted, 0 conflicts"]
    assert run("dump", "--store", store_url)[0] == run("dump", "--store", reference)[0]

    again, err = run("undo", TRANSFER_MID, "--store", store_url)
    assert json.loads(again)["events"][0]["alreadyUndone"] is True
    assert err.splitlines() == [f"{TRANSFER_MID}: already undone, 0 reverted"]
    again, err = run("undo", "--request", "req-0001", "--store", store_url)
    assert (json.loads(again)["reverted"], json.loads(again)["alreadyUndone"]) == (0, True)
    assert "req-0001: already undone, 0 reverted" in err
    assert run("dump", "--store", store_url)[0] == run("dump", "--store", reference)[0]


def test_undo_refuses_delete_user_unknown_mids_and_bad_usage(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'handover.db'}"
    prepared(store, EXAMPLES / "events.jsonl")
    before = run("dump", "--store", store)[0]
    _, err = run("undo", DELETE_MID, "--store", store, code=2)
    assert "delete-user event: it cannot be undone" in err
    _, err = run("undo", "LP.does-not-exist", "--store", store, code=2)
    assert "no event with mid 'LP.does-not-exist'" in err
    _, err = run("undo", "--request", "req-unknown", "--store", store, code=2)
    assert "req-unknown" in err
    _, err = run("undo", "--store", store, code=2)
    assert "give either MID or --request ID" in err
    run("undo", TRANSFER_MID, "--request", "req-0001", "--store", store, code=2)
    assert run("dump", "--store", store)[0] == before


def test_audit_export_as_jsonl_and_csv(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'handover.db'}"
    prepared(store, EXAMPLES / "events.jsonl")
    out, err = run("audit", "--request", "req-0001", "--store", store)
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 11 and "11 audit rows" in err
    assert {r["mid"] for r in rows} == {TRANSFER_MID}
    b101 = [r for r in rows if r["record_key"] == "do_course1/b-101"]
    assert {r["field"]: (r["before"], r["after"]) for r in b101} == {
        "createdby": ("u-ann", "u-ravi"),
        "mentors": (["u-ann", "u-meera"], ["u-ravi", "u-meera"]),
    }

    run("undo", "--request", "req-0001", "--store", store)
    out, _ = run("audit", "--request", "req-0001", "--format", "csv", "--store", store)
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["at", "action", "action_by", "mid", "request_id", "store", "record_key", "field", "before",
                        "after"]
    body = [dict(zip(table[0], line, strict=True)) for line in table[1:]]
    assert len(body) == 22  # the transfer's rows, then the undo's, oldest first
    assert [r["mid"] for r in body] == [TRANSFER_MID] * 11 + ["undo:" + TRANSFER_MID] * 11
    assert [r["action"] for r in body] == ["ownership-transfer"] * 11 + ["undo"] * 11
    undo_mentors = next(r for r in body[11:] if r["record_key"] == "do_course1/b-101" and r["field"] == "mentors")
    assert json.loads(undo_mentors["before"]) == ["u-ravi", "u-meera"]  # a list: JSON text
    assert json.loads(undo_mentors["after"]) == ["u-ann", "u-meera"]
    undo_creator = next(r for r in body[11:] if r["record_key"] == "do_course1/b-101" and r["field"] == "createdby")
    assert (undo_creator["before"], undo_creator["after"]) == ("u-ravi", "u-ann")  # a text: as it is

    out, _ = run("audit", "--mid", DELETE_MID, "--store", store)
    cleaned = [json.loads(line) for line in out.splitlines()]
    assert cleaned and all(r["before"] is None and r["after"] == "Deleted User" for r in cleaned)
    _, err = run("audit", "--request", "req-0001", "--format", "xml", "--store", store, code=2)
    assert "--format must be jsonl or csv" in err
    run("audit", "--store", store, code=2)
