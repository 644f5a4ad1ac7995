"""``handover load`` reads its fixture as a stream and writes it in chunks in one transaction (issue 15): a text
that is not JSON, even at the very end of the file after more than one chunk, exits 2 naming the file and
writes nothing; the keys come in any order; a file that cannot be read exits 2 as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from handover.adapters.sql import LOAD_CHUNK, SqlStore
from handover.entrypoints.cli import app

runner = CliRunner()
MORE_THAN_A_CHUNK = LOAD_CHUNK + 1000


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == code, (result.stdout, result.stderr)
    return " ".join(result.stderr.split())


def fixture(n: int) -> dict[str, Any]:
    return {
        "assets": [{"identifier": f"do_{i}", "objectType": "Question", "createdBy": "u1"} for i in range(n)],
        "course_batches": [{"courseid": "c", "batchid": f"b{i}", "status": 1, "mentors": ["u1"]} for i in range(n)],
        "users": [{"id": "u1", "firstName": "One"}],  # after the records that name it
    }


def store_with_one_asset(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run("init", "--store", url)
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"assets": [{"identifier": "do_0", "objectType": "Question", "creator": "kept"}]}))
    run("load", str(path), "--store", url)
    return url, dump(url)


def dump(url: str) -> str:
    return json.dumps({name: list(rows) for name, rows in SqlStore(url).dump_sections()})


def test_keys_in_any_order_and_more_than_a_chunk_load(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run("init", "--store", url)
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(fixture(MORE_THAN_A_CHUNK), indent=1))
    out = run("load", str(path), "--store", url)
    assert out == f"1 users, {MORE_THAN_A_CHUNK} course_batches, {MORE_THAN_A_CHUNK} assets loaded"
    sections = {name: list(rows) for name, rows in SqlStore(url).dump_sections()}
    assert len(sections["assets"]) == len(sections["course_batches"]) == MORE_THAN_A_CHUNK
    assert sections["users"][0]["firstName"] == "One"


def test_a_text_that_is_not_json_at_the_end_of_the_file_writes_nothing(tmp_path: Path) -> None:
    url, before = store_with_one_asset(tmp_path)
    path = tmp_path / "fixture.json"
    text = json.dumps(fixture(MORE_THAN_A_CHUNK))
    for broken in (text[:-1], text + ",", text[:-1] + ', "notifications": [}'):
        path.write_text(broken)
        try:
            json.loads(broken)
        except json.JSONDecodeError as exc:
            expected = f"error: {path} is not valid JSON: {exc}"
        assert run("load", str(path), "--store", url, code=2) == expected
        assert dump(url) == before


def test_a_bad_record_in_a_later_chunk_exits_2_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    url, before = store_with_one_asset(tmp_path)
    doc = fixture(MORE_THAN_A_CHUNK)
    doc["assets"][-1]["objectType"] = 7
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(doc))
    assert run("load", str(path), "--store", url, code=2) == (
        f"error: {path}: asset needs string 'identifier' and 'objectType'")
    assert dump(url) == before


def test_a_file_that_cannot_be_read_exits_2(tmp_path: Path) -> None:
    url, before = store_with_one_asset(tmp_path)
    missing = tmp_path / "missing.json"
    assert run("load", str(missing), "--store", url, code=2).startswith(f"error: cannot read {missing}: ")
    path = tmp_path / "latin1.json"
    text = json.dumps(fixture(MORE_THAN_A_CHUNK), ensure_ascii=False)
    data = text[:-20].encode() + "é".encode("latin-1") + text[-19:].encode()
    path.write_bytes(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        expected = f"error: cannot read {path}: {exc}"
    assert run("load", str(path), "--store", url, code=2) == expected
    assert dump(url) == before
