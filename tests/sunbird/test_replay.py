"""``replay`` on ``sunbird://`` against the test servers: the shared examples give the report and final records
the embedded store gives; a second replay changes nothing; every search document equals its row afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from handover.entrypoints.cli import app
from tests.conftest import EXAMPLES
from tests.sunbird.conftest import FIXTURE
from tests.sunbird_deployment import Deployment, batch_row, node_properties

EXPECTED_DUMP = json.loads((EXAMPLES / "expected_dump.json").read_text())
CONFIGURED_TYPES = {"Question", "QuestionImage", "QuestionSet", "QuestionSetImage"}  # target_object_types' default


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--store", "sunbird://"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def report_lines(path: Path) -> list[dict[str, Any]]:
    """The report without ``mid`` (the shared expected report leaves it out)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("mid", None)
    return lines


def assert_documents_equal_rows(deployment: Deployment) -> None:
    documents = deployment.documents()
    rows = deployment.rows()
    assert set(documents) == {batchid for _, batchid in rows}
    for (courseid, batchid), row in rows.items():
        doc = documents[batchid]
        assert (doc["courseId"], doc["createdBy"], doc["mentors"], doc["status"]) == (
            courseid, row["createdby"], row["mentors"], row["status"]
        )


def test_examples(deployment: Deployment, tmp_path: Path) -> None:
    deployment.seed(FIXTURE)
    env = deployment.env
    cli(env, "init")
    cli(env, "init")  # idempotent
    report = tmp_path / "report.jsonl"
    cli(env, "replay", str(EXAMPLES / "events.jsonl"), "--report", str(report))
    assert report_lines(report) == report_lines(EXAMPLES / "expected_report.jsonl")

    dumped = json.loads(cli(env, "dump"))
    assert dumped["users"] == []  # the directory is userorg's
    assert dumped["course_batches"] == EXPECTED_DUMP["course_batches"]
    model_keys = set(EXPECTED_DUMP["assets"][0])  # the dump also carries the nodes' other properties
    configured = [a for a in EXPECTED_DUMP["assets"] if a["objectType"] in CONFIGURED_TYPES]
    assert [{k: a[k] for k in model_keys} for a in dumped["assets"]] == configured  # dump reads only these
    assert dumped["notifications"] == EXPECTED_DUMP["notifications"]

    # read back with the drivers: handover's fields as expected, every other column / property untouched
    rows = deployment.rows()
    for batch in EXPECTED_DUMP["course_batches"]:
        assert rows[(batch["courseid"], batch["batchid"])] == batch_row(batch)
    nodes = deployment.nodes()
    for asset in EXPECTED_DUMP["assets"]:
        assert nodes[asset["identifier"]] == node_properties(asset)
    assert_documents_equal_rows(deployment)

    again = tmp_path / "again.jsonl"
    cli(env, "replay", str(EXAMPLES / "events.jsonl"), "--report", str(again))
    assert [line["outcome"] for line in report_lines(again)] == ["duplicate"] * 5 + ["rejected"]
    assert json.loads(cli(env, "dump")) == dumped
    assert deployment.rows() == rows
    assert deployment.nodes() == nodes


def test_load_sets_only_the_fixtures_fields_and_dump_reads_configured_types(
    deployment: Deployment, tmp_path: Path
) -> None:
    """``load`` over a live deployment keeps every other column, document field and node property; ``dump`` pages
    the configured asset types only."""
    deployment.seed(FIXTURE)
    changed = json.loads(json.dumps(FIXTURE))
    changed["course_batches"][0]["name"] = "Renamed"
    changed["assets"][0]["status"] = "Retired"
    changed["assets"][0]["creator"] = None  # a null in the fixture removes the property
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(changed))
    cli(deployment.env, "init")
    cli(deployment.env, "load", str(path))

    batch = changed["course_batches"][0]
    row = deployment.rows()[(batch["courseid"], batch["batchid"])]
    assert row == {**batch_row(FIXTURE["course_batches"][0]), "name": "Renamed"}  # cert_templates, dates... kept
    doc = deployment.documents()[batch["batchid"]]
    assert doc["name"] == "Renamed" and doc["participantCount"] == 3 and doc["enrollmentType"] == "open"
    asset = changed["assets"][0]
    node = deployment.nodes()[asset["identifier"]]
    expected = {**node_properties(FIXTURE["assets"][0]), "status": "Retired"}
    expected.pop("creator")
    assert node == expected  # channel, versionKey, name... kept

    dumped = json.loads(cli(deployment.env, "dump"))
    assert [a["identifier"] for a in dumped["assets"]] == sorted(
        a["identifier"] for a in FIXTURE["assets"] if a["objectType"] in CONFIGURED_TYPES
    )
    assert [(b["courseid"], b["batchid"]) for b in dumped["course_batches"]] == sorted(
        (b["courseid"], b["batchid"]) for b in FIXTURE["course_batches"]
    )
