"""``handover config``: the effective settings as JSON with each value's source; ``--config`` repeated and
``HANDOVER_CONFIG`` with several entries."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from handover.config import MASK
from tests.conftest import UPSTREAM

runner = CliRunner()
LERN_CONF = UPSTREAM / "lern" / "user-ownership-transfer.conf"
INQUIRY_MASTER_CONF = Path(__file__).resolve().parents[1] / "data" / "inquiry-master" / "user-pii-data-updater.conf"


def config(*args: str, env: dict[str, str] | None = None, code: int = 0) -> Any:
    from handover.entrypoints.cli import app

    base = {k: v for k, v in os.environ.items() if not k.startswith("HANDOVER_") or k == "HANDOVER_SHARED"}
    result = runner.invoke(app, ["config", *args], env={**base, **(env or {})})
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result.output


def test_both_job_files_by_option() -> None:
    doc = config("--config", str(INQUIRY_MASTER_CONF), "--config", str(LERN_CONF),
                 env={"HANDOVER_JOB_ENV": "dev", "HANDOVER_NEO4J_PASSWORD": "pw-123"})
    assert [f["layout"] for f in doc["files"]] == ["inquiry", "lern"]
    s = doc["settings"]
    assert s["kafka.input.user_pii_topic"] == {
        "value": "dev.delete.user", "source": "file", "file": str(INQUIRY_MASTER_CONF), "layout": "inquiry",
        "key": "kafka.input.topic",
    }
    transfer = s["kafka.input.topic"]
    assert (transfer["value"], transfer["layout"]) == ("dev.user.ownership.transfer", "lern")
    assert s["es.basePath"]["file"] == str(LERN_CONF)
    assert s["neo4j.routePath"]["file"] == str(INQUIRY_MASTER_CONF)
    assert s["job.env"] == {"value": "dev", "source": "environment", "variable": "HANDOVER_JOB_ENV"}
    assert s["neo4j.password"]["value"] == MASK
    assert s["max_attempts"] == {"value": 5, "source": "default"}
    assert {"file": str(LERN_CONF), "key": "neo4j.routePath"} in [
        {"file": i["file"], "key": i["key"]} for i in doc["notRead"]
    ]
    assert "task.checkpointing.interval" in doc["unknownKeys"]
    assert doc["store"] == {"value": "sqlite:///handover.db", "source": "default", "default": "sqlite:///handover.db"}


def test_handover_config_environment_takes_several_entries(tmp_path: Path) -> None:
    extra = tmp_path / "extra.conf"
    extra.write_text("worker.batch.size = 50\n")
    doc = config(env={"HANDOVER_CONFIG": os.pathsep.join([f"lern={LERN_CONF}", str(extra)]),
                      "HANDOVER_STORE": "postgresql://handover:pg-secret@db/handover"})
    assert [(Path(f["path"]).name, f["layout"], f["recognisedBy"]) for f in doc["files"]] == [
        ("user-ownership-transfer.conf", "lern", "prefix"), ("extra.conf", "handover", "content: no job's marks")
    ]
    assert doc["settings"]["worker.batch.size"]["file"] == str(extra)
    assert doc["store"]["value"] == f"postgresql://handover:{MASK}@db/handover"
    assert doc["store"]["source"] == "environment HANDOVER_STORE"
    assert any("neo4j.routePath" in w for w in doc["warnings"])


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("kafka.auto.offset.reset = smallest\n")
    out = config("--config", str(bad), code=2)
    assert "kafka.auto.offset.reset" in out and "bad.conf" in out
