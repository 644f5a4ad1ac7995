"""On ``sunbird://`` against the test servers (issue 13 items 10, 11): an undo of a transfer from a deleted user writes
the replacement value, not her name, into the Neo4j nodes; a second delete-user event for a cleaned user (new mid)
mails nobody. (Redaction of earlier audit rows is not done on the Sunbird audit keyspace: see the README.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.sunbird.conftest import FIXTURE
from tests.sunbird.test_replay import cli
from tests.sunbird_deployment import Deployment


def transfer(mid: str, request_id: str, asset: str) -> dict[str, Any]:
    return {"eid": "BE_JOB_REQUEST", "mid": mid, "object": {"id": "u-ann", "type": "user"},
            "context": {"cdata": {"id": request_id, "type": "Request"}},
            "edata": {"action": "ownership-transfer", "organisationId": "org-1",
                      "fromUserProfile": {"userId": "u-ann"}, "toUserProfile": {"userId": "u-ravi"},
                      "assetInformation": {"identifier": asset}}}


def delete_ann(mid: str) -> dict[str, Any]:
    return {"eid": "BE_JOB_REQUEST", "mid": mid, "object": {"id": "u-ann", "type": "User"},
            "edata": {"action": "delete-user", "organisationId": "org-1", "userId": "u-ann", "userName": "ann_lee",
                      "suggested_users": [{"role": "ORG_ADMIN", "users": ["u-admin"]}]}}


def test_undo_writes_no_name_back_and_one_email_per_deleted_user(deployment: Deployment, tmp_path: Path) -> None:
    deployment.seed(FIXTURE)  # u-ann is deleted in the directory; her assets still carry her name
    env = deployment.env
    cli(env, "init")
    events = tmp_path / "events.jsonl"
    lines = [transfer("LP.t1", "r-1", "do_q1"), delete_ann("LP.d1"), delete_ann("LP.d2")]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    cli(env, "replay", str(events))
    assert deployment.nodes()["do_q1"]["creator"] == "Ravi Kumar"
    notes = json.loads(cli(env, "dump"))["notifications"]
    assert [n["mid"] for n in notes] == ["LP.d1"]  # LP.d2 changed nothing: no second email
    assert "do_q1" not in notes[0]["assets"] and "do_qs1" in notes[0]["assets"]

    cli(env, "undo", "--request", "r-1")
    node = deployment.nodes()["do_q1"]
    assert (node["createdBy"], node["creator"]) == ("u-ann", "Deleted User")  # not "Ann Lee"
