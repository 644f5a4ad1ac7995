"""The shared examples through the CLI reproduce the expected report and dump, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from handover.entrypoints.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def read_report(path: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("mid", None)
    return lines


def test_examples_give_expected_report_and_dump(store_url: str, tmp_path: Path) -> None:
    run("init", "--store", store_url)
    run("init", "--store", store_url)  # idempotent
    run("load", str(EXAMPLES / "fixture.json"), "--store", store_url)
    report = tmp_path / "report.jsonl"
    run("replay", str(EXAMPLES / "events.jsonl"), "--report", str(report), "--store", store_url)
    assert read_report(report) == read_report(EXAMPLES / "expected_report.jsonl")
    dumped = json.loads(run("dump", "--store", store_url))
    assert dumped == json.loads((EXAMPLES / "expected_dump.json").read_text())


def test_dry_run_reports_the_same_and_changes_nothing(store_url: str, tmp_path: Path) -> None:
    run("init", "--store", store_url)
    run("load", str(EXAMPLES / "fixture.json"), "--store", store_url)
    before = run("dump", "--store", store_url)
    report = tmp_path / "report.jsonl"
    run("replay", str(EXAMPLES / "events.jsonl"), "--report", str(report), "--dry-run", "--store", store_url)
    assert read_report(report) == read_report(EXAMPLES / "expected_report.jsonl")
    assert run("dump", "--store", store_url) == before
    # no ledger rows either: a real replay afterwards applies everything
    real = tmp_path / "real.jsonl"
    run("replay", str(EXAMPLES / "events.jsonl"), "--report", str(real), "--store", store_url)
    assert read_report(real) == read_report(EXAMPLES / "expected_report.jsonl")
