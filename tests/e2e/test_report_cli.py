"""``handover report deleted-owners`` (SPEC 12) on the shared examples: CSV with Lern's columns and jsonl, live
(a transfer empties it), each message: the summary, an empty report, an unknown organisation, a bad argument, a
store that fails, and a reader that stops early (``| head``)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from handover.entrypoints.cli import app
from tests.conftest import EXAMPLES
from tests.report_fixture import report_fixture

runner = CliRunner()
HEADER = ["userId", "username", "organisationId", "roles", "assetIdentifier", "assetName", "assetStatus",
          "objectType", "ownedAs"]
ANN = [  # what u-ann (deleted) still owns in the shared fixture: what a transfer of u-ann would move
    ["u-ann", "ann_lee", "org-1", "CONTENT_CREATOR, COURSE_MENTOR", "do_course1/b-101", "Algebra, spring",
     "Ongoing Batch", "Course Batch", "createdBy"],
    ["u-ann", "ann_lee", "org-1", "CONTENT_CREATOR, COURSE_MENTOR", "do_course1/b-102", "Algebra, summer",
     "Upcoming Batch", "Course Batch", "mentors"],
    ["u-ann", "ann_lee", "org-1", "CONTENT_CREATOR, COURSE_MENTOR", "do_q1", "", "Live", "Question", "createdBy"],
    ["u-ann", "ann_lee", "org-1", "CONTENT_CREATOR, COURSE_MENTOR", "do_q1.img", "", "Draft", "QuestionImage",
     "createdBy"],
    ["u-ann", "ann_lee", "org-1", "CONTENT_CREATOR, COURSE_MENTOR", "do_q2", "", "Draft", "Question", "createdBy"],
    ["u-ann", "ann_lee", "org-1", "CONTENT_CREATOR, COURSE_MENTOR", "do_qs1", "", "Draft", "QuestionSet",
     "createdBy"],
]


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout, result.stderr


@pytest.fixture
def store(store_url: str) -> str:
    run("init", "--store", store_url)
    run("load", str(EXAMPLES / "fixture.json"), "--store", store_url)
    return store_url


def test_csv_as_lern_has_it_then_empty_after_the_transfer(store: str) -> None:
    out, err = run("report", "deleted-owners", "--store", store)
    assert list(csv.reader(io.StringIO(out))) == [HEADER, *ANN]
    assert err.strip() == "2 course batches and 4 assets still owned by 1 deleted user (every organisation)"

    run("replay", str(EXAMPLES / "events.jsonl"), "--store", store)  # u-ann's records go to u-ravi
    out, err = run("report", "deleted-owners", "-o", "org-1", "--store", store)
    assert list(csv.reader(io.StringIO(out))) == [HEADER]
    assert err.strip() == "0 course batches and 0 assets still owned by 0 deleted users (organisation org-1)"


def test_jsonl(store: str) -> None:
    out, _ = run("report", "deleted-owners", "--organisation", "org-1", "--format", "jsonl", "--store", store)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [[r[k] if k != "roles" else ", ".join(r[k]) for k in HEADER] for r in rows] == ANN
    assert rows[0]["roles"] == ["CONTENT_CREATOR", "COURSE_MENTOR"]


def test_an_organisation_with_no_deleted_owner(store: str) -> None:
    out, err = run("report", "deleted-owners", "-o", "org-2", "--format", "jsonl", "--store", store)
    assert out == ""
    assert err.strip() == "0 course batches and 0 assets still owned by 0 deleted users (organisation org-2)"


def test_usage_errors(store: str) -> None:
    _, err = run("report", "deleted-owners", "-o", "org-9", "--store", store, code=2)
    assert err.strip() == "error: No organisation org-9 in the user directory."
    _, err = run("report", "deleted-owners", "-o", "x" * 300, "--store", store, code=2)
    assert " ".join(err.split()).startswith("error: organisation 'xxxx") and "longer than 255" in err
    _, err = run("report", "deleted-owners", "--format", "xml", "--store", store, code=2)
    assert "--format must be one of csv, jsonl, not 'xml'" in " ".join(err.split())
    _, err = run("report", "owners", "--store", store, code=2)
    assert "No such command 'owners'" in err


def test_store_failures(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'never-initialised.db'}"
    out, err = run("report", "deleted-owners", "--store", empty, code=1)
    assert out == ""  # no header before the error
    assert " ".join(err.split()) == (f"error: the store {empty} has no handover schema yet (table 'asset' is "
                                     f"missing): run `handover init --store {empty}` first")
    _, err = run("report", "deleted-owners", "--store", "postgresql://127.0.0.1:1/none", code=1)
    assert " ".join(err.split()).startswith("error: store: database unavailable: connection failed:")


def test_a_reader_that_stops_early(tmp_path: Path) -> None:
    """``handover report deleted-owners | head -3``: no error, exit 0, as soon as the reader is gone."""
    url = f"sqlite:///{tmp_path / 'big.db'}"
    run("init", "--store", url)
    fixture = tmp_path / "report.json"
    fixture.write_text(json.dumps(report_fixture(owners=200, records=20)))
    run("load", str(fixture), "--store", url)
    cli = [sys.executable, "-c", "from handover.entrypoints.cli import main; main()"]
    proc = subprocess.Popen([*cli, "report", "deleted-owners", "--store", url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert first[0].decode().startswith("userId,username,")
    assert err == ""
