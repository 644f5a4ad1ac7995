"""Property tests of the engine on real stores: random fixtures and event streams.

The engine's report and final dump must equal an independent reference model (tests/reference.py); a second
replay changes nothing; uninvolved users' records, completed batches and unconfigured assets never change;
mentors never hold duplicates after a transfer; a dry run changes nothing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handover.adapters.sql import SqlStore
from handover.config import load_settings
from handover.entrypoints.cli import write_dump
from handover.service.engine import Engine, EngineSettings
from tests.reference import Reference

USERS = ["u1", "u2", "u3", "u4"]
ORGS = ["o1", "o2"]
IDS = ["do_1", "do_1.img", "do_2", "do_2.img", "do_3", "do_<x>"]

names = st.sampled_from(["", "Ann", "Zoë", "O'Brien", 'a"b', " "])


@st.composite
def users_st(draw: Any) -> list[dict[str, Any]]:
    """Every pooled user exists (so most transfers validate), mostly in one org, some deleted."""
    return [
        {
            "id": uid,
            "userName": draw(st.sampled_from(["login", uid])),
            "firstName": draw(names),
            "lastName": draw(names),
            "rootOrgId": draw(st.sampled_from(["o1", "o1", "o1", "o2"])),
            "roles": draw(
                st.lists(
                    st.sampled_from(
                        ["CONTENT_CREATOR", "CONTENT_CREATOR", "BOOK_CREATOR", "COURSE_MENTOR", "ORG_ADMIN"]
                    ),
                    unique=True,
                    min_size=1,
                    max_size=2,
                )
            ),
            "isDeleted": draw(st.sampled_from([False, False, True])),
        }
        for uid in USERS
        if uid != "u4" or draw(st.booleans())
    ]


batches_st = st.lists(
    st.fixed_dictionaries(
        {
            "courseid": st.sampled_from(["c1", "c2"]),
            "batchid": st.sampled_from([f"b{i}" for i in range(8)]),
            "name": st.just("B"),
            "status": st.integers(0, 2),
            "createdby": st.sampled_from([*USERS, "u9"]),
            "mentors": st.lists(st.sampled_from([*USERS, "u9"]), max_size=5),
        }
    ),
    unique_by=lambda b: (b["courseid"], b["batchid"]),
    max_size=8,
)
assets_st = st.lists(
    st.fixed_dictionaries(
        {
            "identifier": st.sampled_from(IDS),
            "objectType": st.sampled_from(
                ["Question", "Question", "QuestionImage", "QuestionSet", "QuestionSetImage", "Content"]
            ),
            "schemaVersion": st.sampled_from([None, "1.0", "1.1", "1.1", "2.0"]),
            "status": st.sampled_from(["Draft", "Live", "Review"]),
            "visibility": st.sampled_from(["Default", "Parent"]),
            "createdBy": st.sampled_from(["u1", "u1", "u2", "u3"]),
            "creator": names,
            "originData": st.sampled_from([None, {"creator": {"name": "Ann"}}]),
        }
    ),
    unique_by=lambda a: a["identifier"],
    min_size=2,
    max_size=6,
)


FIXTURE = st.fixed_dictionaries({"users": users_st(), "course_batches": batches_st, "assets": assets_st})


@st.composite
def scenario(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """A fixture and an event stream aimed at it: mostly valid transfers from users who own something to
    active users of their org, and deletions of deleted users, mixed with every kind of bad event."""
    fixture = draw(FIXTURE)
    users = fixture["users"]
    owners = sorted(
        {b["createdby"] for b in fixture["course_batches"]}
        | {a["createdBy"] for a in fixture["assets"]}
        | {m for b in fixture["course_batches"] for m in b["mentors"]}
    )
    deleted = [u["id"] for u in users if u["isDeleted"]]
    lines: list[str] = []
    for i in range(draw(st.integers(1, 6))):
        mid = draw(st.sampled_from([f"LP.{i}", f"LP.{i}", f"LP.{i}", "LP.dup"]))
        kind = draw(
            st.sampled_from(["transfer", "transfer", "transfer", "single", "nameless", "delete", "delete", "garbage"])
        )
        if kind == "garbage":
            lines.append(draw(st.sampled_from(["not json", "{}", '{"eid":"BE_JOB_REQUEST","edata":{}}'])))
            continue
        if kind == "delete":
            uid = draw(st.sampled_from(deleted * 4 + USERS + ["u9"]))
            admins = draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=2))
            ev = {
                "eid": "BE_JOB_REQUEST",
                "mid": mid,
                "object": {"id": uid, "type": "User"},
                "edata": {
                    "action": "delete-user",
                    "userId": uid,
                    "suggested_users": [
                        {"role": draw(st.sampled_from(["ORG_ADMIN", "org_admin", "CREATOR"])), "users": admins}
                    ],
                },
            }
        else:
            frm = draw(st.sampled_from(owners * 3 + USERS + ["u9"]))
            org = next((u["rootOrgId"] for u in users if u["id"] == frm), "o1")
            good = [u["id"] for u in users if u["id"] != frm and u["rootOrgId"] == org and not u["isDeleted"]]
            to = draw(st.sampled_from(good * 4 + USERS))
            info: dict[str, Any] = (
                {"identifier": draw(st.sampled_from([*IDS, "do_missing"])), "objectType": "Question"}
                if kind == "single"
                else {"objectType": "Question", "name": "no identifier"}  # as upstream userorg can send
                if kind == "nameless"
                else {}
            )
            ev = {
                "eid": "BE_JOB_REQUEST",
                "mid": mid,
                "object": {"id": frm, "type": "user"},
                "context": {"cdata": {"id": "req", "type": "Request"}},
                "edata": {
                    "action": "ownership-transfer",
                    "organisationId": draw(st.sampled_from([org] * 4 + ORGS)),
                    "fromUserProfile": {"userId": frm},
                    "toUserProfile": {"userId": to},
                    "assetInformation": info,
                },
            }
        lines.append(json.dumps(ev))
    return fixture, lines


def dump(store: SqlStore) -> dict[str, Any]:
    import io

    out = io.StringIO()
    write_dump(store.dump_sections(), out)
    return dict(json.loads(out.getvalue()))


def mentor_index(store: SqlStore) -> set[tuple[str, str, str]]:
    from handover.adapters.sql import course_batch_mentor

    with store.engine.connect() as conn:
        return {(r.userid, r.courseid, r.batchid) for r in conn.execute(course_batch_mentor.select())}


def make_store(url: str, fixture: dict[str, Any]) -> SqlStore:
    store = SqlStore(url)
    store.init_schema()
    store.load(fixture)
    return store


def engine(store: Any, page_size: int, bulk: bool, sample_limit: int = 0) -> Engine:
    settings = EngineSettings(page_size=page_size, bulk=bulk, sample_limit=sample_limit)
    return Engine(store, load_settings(None, environ={}).policy(), settings)


def report(outcome: Any) -> dict[str, Any]:
    r = outcome.report(with_mid=False)
    return {k: r[k] for k in ("outcome", "reason", "skipped", "changed")}


def run_property(url: str, fixture: dict[str, Any], lines: list[str], page_size: int, bulk: bool = True) -> None:
    """``bulk``: whether the engine may use the store's set-based writes (both paths must agree)."""
    store = make_store(url, fixture)
    ref = Reference(fixture)
    expected = [ref.apply(line) for line in lines]
    before = dump(store)

    with store.preview(carry_changes=True) as factory:  # replay --dry-run: same reports, nothing changes
        preview = engine(factory, page_size, bulk)
        assert [report(preview.process(line)) for line in lines] == expected
    assert dump(store) == before
    if lines:
        with store.preview() as factory:  # the API's preview: writes nothing, exact for one event on its own
            assert report(engine(factory, page_size, bulk).process(lines[0])) == expected[0]
        # with records shown: the store counts past the first page (bulk), or every record is walked
        with store.preview() as factory:
            shown = engine(factory, page_size, bulk, sample_limit=3).process(lines[0])
        with store.preview() as factory:
            walked = engine(factory, page_size, False, sample_limit=3).process(lines[0])
        assert (report(shown), shown.samples) == (expected[0], walked.samples)

    eng = engine(store, page_size, bulk)
    assert [report(eng.process(line)) for line in lines] == expected
    after = dump(store)
    assert after == ref.dump()
    assert mentor_index(store) == {
        (m, b["courseid"], b["batchid"]) for b in after["course_batches"] for m in b["mentors"]
    }  # the index the engine finds mentored batches by stays equal to the lists

    # a second replay changes nothing
    assert all(eng.process(line).outcome != "applied" for line in lines)
    assert dump(store) == after

    involved = set()
    for line in lines:
        try:
            e = json.loads(line)["edata"]
        except (ValueError, KeyError, TypeError):
            continue
        involved |= {
            e.get("userId"),
            (e.get("fromUserProfile") or {}).get("userId"),
            (e.get("toUserProfile") or {}).get("userId"),
        }
    old = {(b["courseid"], b["batchid"]): b for b in before["course_batches"]}
    for b in after["course_batches"]:
        o = old[(b["courseid"], b["batchid"])]
        if o["status"] == 2 or not ({o["createdby"], *o["mentors"]} & involved):
            assert b == o  # completed or uninvolved batches never change
        elif b["mentors"] != o["mentors"]:  # a rewritten mentor list holds each user once
            assert len(b["mentors"]) == len(set(b["mentors"]))
    old_assets = {a["identifier"]: a for a in before["assets"]}
    for a in after["assets"]:
        o = old_assets[a["identifier"]]
        if o["objectType"] == "Content" or o["schemaVersion"] == "2.0" or o["createdBy"] not in involved:
            assert a == o


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.sampled_from([1, 2, 1000]), st.booleans())
def test_engine_matches_reference_on_sqlite(case: tuple[dict[str, Any], list[str]], page_size: int, bulk: bool) -> None:
    fixture, lines = case
    with tempfile.TemporaryDirectory() as tmp:
        run_property(f"sqlite:///{Path(tmp) / 'h.db'}", fixture, lines, page_size, bulk)


@st.composite
def chained(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """A scenario whose events often act on what an event before them wrote: a transfer from, or a deletion of, a
    user an earlier transfer gave records to."""
    fixture, lines = draw(scenario())
    given_to: list[str] = []
    out = []
    for line in lines:
        try:
            ev = json.loads(line)
            edata = ev["edata"]
        except (ValueError, KeyError, TypeError):
            out.append(line)
            continue
        if given_to and draw(st.booleans()):
            user = draw(st.sampled_from(given_to))
            if "fromUserProfile" in edata:
                edata["fromUserProfile"]["userId"] = ev["object"]["id"] = user
            elif "userId" in edata:
                edata["userId"] = ev["object"]["id"] = user
        to = (edata.get("toUserProfile") or {}).get("userId")
        if to:
            given_to.append(to)
        out.append(json.dumps(ev))
    return fixture, out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chained(), st.sampled_from([1, 2, 1000]), st.booleans())
def test_a_micro_batch_matches_the_reference_on_sqlite(
    case: tuple[dict[str, Any], list[str]], page_size: int, bulk: bool
) -> None:
    """The whole stream in one unit of work (``process_batch``, as the workers and replay do): each event reads
    what the events before it wrote (on SQLite the batch reads its records ahead, ``service.batch_reads``)."""
    fixture, lines = case
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(f"sqlite:///{Path(tmp) / 'h.db'}", fixture)
        ref = Reference(fixture)
        expected = [ref.apply(line) for line in lines]
        eng = engine(store, page_size, bulk)
        assert [report(o) for o in eng.process_batch(lines)] == expected
        after = dump(store)
        assert after == ref.dump()
        assert mentor_index(store) == {
            (m, b["courseid"], b["batchid"]) for b in after["course_batches"] for m in b["mentors"]
        }
        assert all(o.outcome != "applied" for o in eng.process_batch(lines))
        assert dump(store) == after


@pytest.mark.postgres
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(scenario(), st.sampled_from([1, 1000]), st.booleans())
def test_engine_matches_reference_on_postgres(
    postgres_url: str, case: tuple[dict[str, Any], list[str]], page_size: int, bulk: bool
) -> None:
    fixture, lines = case
    import sqlalchemy as sa

    from handover.adapters.sql import metadata

    store = SqlStore(postgres_url)
    metadata.drop_all(store.engine)
    store.engine.dispose()
    run_property(postgres_url, fixture, lines, page_size, bulk)
    with store.engine.begin() as conn:
        conn.execute(sa.text("SELECT 1"))
    store.engine.dispose()
