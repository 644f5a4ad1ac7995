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
    assert [{k: a[k] for k in model_keys} for a in dumped["assets"]] == EXPECTED_DUMP["assets"]
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
