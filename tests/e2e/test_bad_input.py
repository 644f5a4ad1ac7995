"""Bad input never reaches a store and never gets a 5xx (issue 13 items 2, 3, 5; SPEC 5 "More fixes"), on SQLite
and PostgreSQL: NUL and lone surrogates in every field of every endpoint (API, console), ids over the length limit,
a reused ``X-Request-ID``, a request whose event would be over the worker's limit; and the same strings in events
(engine, ``replay``, the in-process worker): a rejection with a reason, the rest of the stream goes on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from handover.adapters.sql_queue import SqlEventQueue, event_queue
from handover.bootstrap import ApiParts, App
from handover.domain.events import MAX_EVENT_BYTES
from handover.domain.text import MAX_ID_LENGTH
from handover.entrypoints.api import create_app
from handover.entrypoints.cli import app as cli
from tests.conftest import EXAMPLES
from tests.e2e.api_support import TRANSFER, assert_error, body, client, role, wired

INVALID = "UOS_UOWNTRANS0028"
NUL, SURROGATE = "\x00", "\ud800"
LONG = "x" * (MAX_ID_LENGTH + 1)


@pytest.fixture
def env(store_url: str) -> Iterator[tuple[TestClient, App, ApiParts]]:
    app, parts = wired(store_url)
    with client(create_app(app, parts)) as http:
        yield http, app, parts


def raw_json(doc: Any) -> dict[str, Any]:
    """Keyword arguments that send ``doc`` as JSON text with ``\\uXXXX`` escapes (a lone surrogate included)."""
    return {"content": json.dumps(doc), "headers": {"content-type": "application/json"}}


def with_value(path: str, value: str) -> dict[str, Any]:
    """The standard transfer body with ``value`` put at ``path`` (dots; ``objects`` gets one object)."""
    doc = body(objects=[{"identifier": "do_q2", "objectType": "Question", "name": "Q2"}])
    node: Any = doc["request"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


FIELDS = [
    "organisationId", "context", "actionBy.userId", "fromUser.userId", "toUser.userId",
    "fromUser.roles.0.role", "toUser.roles.0.scope.0.organisationId", "objects.0.identifier", "objects.0.name",
]


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("endpoint", ["", "/preview"])
def test_unstorable_strings_in_any_field_are_400(
    env: tuple[TestClient, App, ApiParts], endpoint: str, field: str, bad: str
) -> None:
    http = env[0]
    value = f"u-{bad}-ann"
    response = http.post(TRANSFER + endpoint, **raw_json(with_value(field, value)))
    problem = "a NUL character" if bad == NUL else "a lone surrogate"
    assert_error(response, 400, INVALID, f"request.{field.replace('.0.', '[0].')} contains {problem}.")


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_unstorable_strings_in_keys_paths_queries_and_undo_are_400(
    env: tuple[TestClient, App, ApiParts], bad: str
) -> None:
    http = env[0]
    doc = body()
    doc["request"][f"extra{bad}"] = 1
    assert http.post(TRANSFER, **raw_json(doc)).status_code == 400
    undo_body = {"request": {"actionBy": {"userId": f"u-admin{bad}"}}}
    assert http.post(f"{TRANSFER}/req-1/undo", **raw_json(undo_body)).status_code == 400
    if bad == NUL:  # a URL carries no lone surrogate (percent-decoding gives U+FFFD)
        for path in (f"{TRANSFER}/a%00b", f"{TRANSFER}/a%00b/undo", f"{TRANSFER}/r/changes?mid=a%00b",
                     "/admin/requests?user=a%00b", "/admin/requests/a%00b"):
            method = http.post if path.endswith("/undo") else http.get
            response = method(path)
            assert response.status_code == 400, (path, response.status_code, response.text[:300])


@pytest.mark.parametrize("bad", [NUL, LONG], ids=["nul", "long"])  # a form carries no lone surrogate
def test_console_forms_refuse_unstorable_strings(env: tuple[TestClient, App, ApiParts], bad: str) -> None:
    http = env[0]
    form = {"organisationId": "org-1", "actionBy": "u-admin", "fromUser": f"u-ann{bad}", "toUser": "u-ravi",
            "objects": "", "context": "User Deletion"}
    for path in ("/admin/transfer/preview", "/admin/transfer"):
        response = http.post(path, data=form)
        assert response.status_code == 400, (path, response.text[:300])
    redrive = http.post("/admin/failed/redrive", data={"mid": f"m{bad}"}, follow_redirects=False)
    assert redrive.status_code == (400 if bad == NUL else 303), redrive.text[:300]  # a long one: no such event
    assert http.post("/admin/requests/r-1/undo", data={"actionBy": f"u{bad}"}).status_code < 500


@pytest.mark.parametrize(
    ("changes", "errmsg"),
    [
        ({"organisationId": LONG}, f"Organization ID is longer than {MAX_ID_LENGTH} characters."),
        ({"actionBy": {"userId": LONG}}, f"given user id under actionBy is longer than {MAX_ID_LENGTH} characters"),
        ({"fromUser": {"userId": LONG, "roles": [role("CONTENT_CREATOR", "org-1")]}},
         f"given user id under fromUser is longer than {MAX_ID_LENGTH} characters"),
        ({"toUser": {"userId": LONG, "roles": [role("CONTENT_CREATOR", "org-1")]}},
         f"given user id under toUser is longer than {MAX_ID_LENGTH} characters"),
        ({"objects": [{"identifier": LONG}]},
         f"given identifier under objects is longer than {MAX_ID_LENGTH} characters"),
    ],
    ids=["org", "actionBy", "fromUser", "toUser", "identifier"],
)
def test_ids_over_the_limit_are_400(
    env: tuple[TestClient, App, ApiParts], changes: dict[str, Any], errmsg: str
) -> None:
    assert_error(env[0].post(TRANSFER, json=body(**changes)), 400, INVALID, errmsg)


def test_a_reused_request_id_is_409_and_leaves_the_first_request_alone(env: tuple[TestClient, App, ApiParts]) -> None:
    http, _, parts = env
    first = http.post(TRANSFER, json=body(), headers={"X-Request-ID": "req-reused"})
    assert first.status_code == 200, first.text
    again = http.post(TRANSFER, json=body(objects=[{"identifier": "do_q2"}]), headers={"X-Request-ID": "req-reused"})
    assert again.status_code == 409, again.text
    assert again.json()["params"]["err"] == "UOS_UOWNTRANS0029"
    assert "req-reused" in again.json()["params"]["errmsg"]
    status = http.get(f"{TRANSFER}/req-reused").json()["result"]["events"]
    assert [e["assetInformation"] for e in status] == [{}]  # still the first request's one event
    assert isinstance(parts.sink, SqlEventQueue)
    assert sum(parts.sink.counts().values()) == 1


def test_a_request_whose_event_would_be_over_the_worker_limit_is_400(env: tuple[TestClient, App, ApiParts]) -> None:
    http, _, parts = env
    big = "n" * (MAX_EVENT_BYTES - 500)  # the body stays under api.max_body_bytes; the event would not
    response = http.post(TRANSFER, json=body(objects=[{"identifier": "do_q2", "name": big}]))
    assert response.status_code == 400, response.text[:300]
    assert f"over the worker's limit of {MAX_EVENT_BYTES} bytes" in response.json()["params"]["errmsg"]
    assert isinstance(parts.sink, SqlEventQueue)
    assert parts.sink.counts() == {}


# --- events: engine, replay, in-process worker -----------------------------------------------------------


FIRST_TRANSFER = next(line for line in (EXAMPLES / "events.jsonl").read_text().splitlines()
                      if '"ownership-transfer"' in line)


def transfer_event(mid: str = "LP.bad.1", **edata: Any) -> dict[str, Any]:
    doc = json.loads(FIRST_TRANSFER)
    doc["mid"] = mid
    doc["edata"].update(edata)
    return doc


POISON = [
    ("mid-surrogate", transfer_event(mid="LP.\ud800"), None),
    ("mid-nul", transfer_event(mid="LP.\x00"), None),
    ("mid-long", transfer_event(mid="LP." + LONG), None),
    ("user-nul", transfer_event(fromUserProfile={"userId": "u-\x00ann"}), "LP.bad.1"),
    ("user-surrogate", transfer_event(toUserProfile={"userId": "u-\udfffravi"}), "LP.bad.1"),
    ("user-long", transfer_event(toUserProfile={"userId": LONG}), "LP.bad.1"),
    ("org-long", transfer_event(organisationId=LONG), "LP.bad.1"),
    ("asset-nul", transfer_event(assetInformation={"identifier": "do_\x00q1"}), "LP.bad.1"),
    ("asset-long", transfer_event(assetInformation={"identifier": LONG}), "LP.bad.1"),
    ("name-nul", transfer_event(actionBy={"userId": "u-admin", "userName": "a\x00b"}), "LP.bad.1"),
    ("request-id-long", {**transfer_event(), "context": {"cdata": {"id": LONG, "type": "Request"}}}, "LP.bad.1"),
    ("action-long", transfer_event(action="x" * 300), "LP.bad.1"),
    ("delete-user-nul", {**transfer_event(), "edata": {"action": "delete-user", "userId": "u\x00"}}, "LP.bad.1"),
    ("delete-admin-long", {**transfer_event(), "edata": {"action": "delete-user", "userId": "u-ann",
                                                         "suggested_users": [{"role": "ORG_ADMIN", "users": [LONG]}]}},
     "LP.bad.1"),
]


@pytest.mark.parametrize(("name", "event", "ledger_mid"), POISON, ids=[p[0] for p in POISON])
def test_poison_events_are_rejected_with_a_reason_and_recorded(
    store_url: str, name: str, event: dict[str, Any], ledger_mid: str | None
) -> None:
    app, _ = wired(store_url)
    line = json.dumps(event)  # ASCII escapes: the surrogate is in the JSON text as \ud800
    outcome = app.engine().process(line)
    expected = "UNSUPPORTED_ACTION" if name == "action-long" else "INVALID_FIELD"
    assert (outcome.outcome, outcome.reason) == ("rejected", expected), outcome
    assert outcome.mid == ledger_mid
    if ledger_mid is not None:  # recorded: the redelivery is a duplicate, never a second try
        assert app.engine().process(line).outcome == "duplicate"


def test_replay_goes_on_after_poison_lines(store_url: str, tmp_path: Path) -> None:
    wired(store_url)
    lines = [json.dumps({**e, "mid": mid and f"{mid}.{n}"}) for n, (_, e, mid) in enumerate(POISON[3:9])]
    lines = [json.dumps(e) for _, e, _ in POISON[:3]] + lines[:3] + [FIRST_TRANSFER]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    result = CliRunner().invoke(cli, ["replay", str(events), "--report", str(report), "--store", store_url],
                                env={"HANDOVER_AUTH_MODE": "none"})
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert [r["reason"] for r in rows[:6]] == ["INVALID_FIELD"] * 6
    assert rows[6]["outcome"] == "applied" and rows[6]["line"] == 7


def test_cli_undo_refuses_an_unstorable_mid(store_url: str) -> None:
    wired(store_url)
    for args in (["undo", "LP.\udcff"], ["undo", "--request", LONG], ["audit", "--mid", "m\udcff"]):
        result = CliRunner().invoke(cli, [*args, "--store", store_url])
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output


def test_a_queued_event_without_a_storable_mid_ends_failed_with_its_reason(store_url: str) -> None:
    """An event the ledger cannot key (it never comes from the API, which checks first) is a failed record, not
    a silent drop: its request shows ``failed``, never ``pending`` forever."""
    _, parts = wired(store_url)
    assert isinstance(parts.sink, SqlEventQueue) and parts.worker is not None and parts.requests is not None
    event = {**transfer_event(mid="LP.ok.1"), "context": {"cdata": {"id": "req-poison", "type": "Request"}}}
    parts.sink.publish_request("req-poison", "u-admin", [event])
    with parts.sink._engine.begin() as conn:  # what a damaged or hand-made queue row would hold
        poisoned = json.dumps({**event, "mid": "LP." + LONG})
        conn.execute(event_queue.update().where(event_queue.c.mid == "LP.ok.1").values(payload=poisoned))
    assert parts.worker.drain() == 1
    (failed,) = parts.sink.failed(request_id="req-poison")
    assert failed.error.startswith("INVALID_FIELD: mid is longer than")
    status = parts.requests.status("req-poison")
    assert status is not None and [e["outcome"] for e in status.events] == ["failed"]
