"""Bulk ownership transfer: handover's engine against a raw set-based SQL baseline, side by side.

One ownership-transfer event for a user who created N course batches (half of them also mentored by that
user, a third completed) and N assets, with as much data owned by others. For each store and N it prints the
replay time with the audit off and on, the baseline's time for the same updates on an identical copy of the
data, their ratios, and the peak RSS of each replay (each run in its own process, so peaks do not mix).

    .venv/bin/python bench/bulk_transfer.py                     # N = 20,000 and 200,000; SQLite and PostgreSQL
    .venv/bin/python bench/bulk_transfer.py --sizes 2000 --stores sqlite

Targets (issues 2 and 6): replay/baseline <= 2 (audit off) and <= 3 (audit on) at N = 200,000; peak RSS at
200,000 <= 1.5 x that at 20,000.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

FROM, TO, OTHER = "u-from", "u-to", "u-other"
ORG = "org-1"
POSTGRES = os.environ.get("HANDOVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def event() -> dict[str, Any]:
    return {
        "eid": "BE_JOB_REQUEST",
        "mid": f"LP.bench.{uuid.uuid4()}",
        "object": {"id": FROM, "type": "user"},
        "context": {"cdata": {"id": "bench", "type": "Request"}},
        "edata": {
            "action": "ownership-transfer",
            "organisationId": ORG,
            "fromUserProfile": {"userId": FROM},
            "toUserProfile": {"userId": TO},
            "assetInformation": {},
        },
    }


# --- data ---------------------------------------------------------------------------------------------


def populate(url: str, n: int) -> None:
    from handover.adapters import sql

    store = sql.SqlStore(url)
    store.init_schema()
    users = [
        {
            "id": uid,
            "userName": uid,
            "firstName": first,
            "lastName": "Bench",
            "rootOrgId": ORG,
            "roles": ["CONTENT_CREATOR"],
            "isDeleted": False,
        }
        for uid, first in ((FROM, "From"), (TO, "To"), (OTHER, "Other"))
    ]
    with store.engine.begin() as conn:
        conn.execute(sql.users.insert(), users)
        for owner in (FROM, OTHER):
            for start in range(0, n, 10_000):
                stop = min(start + 10_000, n)
                batches = []
                mentors = []
                for i in range(start, stop):
                    mentored = i % 2 == 0
                    status = 2 if i % 3 == 0 else i % 2
                    mlist = [owner, "u-mentor"] if mentored else ["u-mentor"]
                    batches.append(
                        {
                            "courseid": f"do_course_{owner}_{i // 100}",
                            "batchid": f"b_{owner}_{i}",
                            "name": f"batch {i}",
                            "status": status,
                            "createdby": owner,
                            "mentors": mlist,
                        }
                    )
                    mentors.extend(
                        {"userid": m, "courseid": batches[-1]["courseid"], "batchid": batches[-1]["batchid"]}
                        for m in mlist
                    )
                conn.execute(sql.course_batch.insert(), batches)
                conn.execute(sql.course_batch_mentor.insert(), mentors)
                conn.execute(
                    sql.asset.insert(),
                    [
                        {
                            "identifier": f"do_{owner}_{i}",
                            "objectType": "Question" if i % 2 else "QuestionSet",
                            "schemaVersion": "1.1" if i % 4 else None,
                            "status": "Live",
                            "visibility": "Default",
                            "createdBy": owner,
                            "creator": f"{owner} name",
                            "originData": None,
                            "extra": None,
                        }
                        for i in range(start, stop)
                    ],
                )
    # Statistics as a store in service has them (autovacuum would get there later): without them PostgreSQL
    # plans keyed bulk writes as scans. Done for both stores, before both the baseline and the replay.
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    store.engine.dispose()


def baseline(url: str) -> None:
    """The same updates as set-based SQL statements, and the ledger row, in one transaction."""
    from handover.adapters import sql

    engine = sql.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    params = {"f": FROM, "t": TO, "fq": json.dumps(FROM), "tq": json.dumps(TO)}
    mentors_expr = "replace(mentors::text, :fq, :tq)::json" if pg else "replace(mentors, :fq, :tq)"
    in_mentored = (
        "(courseid, batchid) IN (SELECT m.courseid, m.batchid FROM course_batch_mentor m"
        " JOIN course_batch b USING (courseid, batchid) WHERE m.userid = :f AND b.status IN (0, 1))"
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE course_batch_mentor SET userid = :t WHERE userid = :f AND {in_mentored}".replace(
                    "m.userid = :f", "m.userid = :f"
                )
            ),
            params,
        )
        conn.execute(
            sa.text(
                f"UPDATE course_batch SET mentors = {mentors_expr} WHERE (courseid, batchid) IN "
                "(SELECT courseid, batchid FROM course_batch_mentor WHERE userid = :t) AND status IN (0, 1)"
            ),
            params,
        )
        conn.execute(
            sa.text("UPDATE course_batch SET createdby = :t WHERE createdby = :f AND status IN (0, 1)"), params
        )
        conn.execute(
            sa.text(
                'UPDATE asset SET "createdBy" = :t, creator = :n WHERE "createdBy" = :f'
                " AND \"objectType\" IN ('Question', 'QuestionImage', 'QuestionSet', 'QuestionSetImage')"
                " AND coalesce(\"schemaVersion\", '1.0') IN ('1.0', '1.1')"
            ),
            {**params, "n": "To Bench"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO ledger (mid, action, outcome, skipped, changed_batches, changed_assets,"
                " processed_at, detail) VALUES (:m, 'ownership-transfer', 'applied', '[]', 0, 0, CURRENT_TIMESTAMP, '')"
            ),
            {"m": f"LP.baseline.{uuid.uuid4()}"},
        )
    engine.dispose()


def replay(url: str, audit: bool) -> dict[str, Any]:
    from handover.adapters.sql import SqlStore
    from handover.config import load_settings
    from handover.service.engine import Engine, EngineSettings

    settings = load_settings(None, environ={})
    engine = Engine(SqlStore(url), settings.policy(), EngineSettings(page_size=settings["page_size"], audit=audit))
    outcome = engine.process(json.dumps(event()))
    assert outcome.outcome == "applied", outcome
    return outcome.report()


# --- orchestration --------------------------------------------------------------------------------------


def child(role: str, url: str, audit: bool) -> dict[str, Any]:
    """Run one measured step in a fresh process; returns its seconds and peak RSS."""
    cmd = [sys.executable, __file__, "--child", role, "--url", url] + (["--audit"] if audit else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def fresh_url(store: str, workdir: Path) -> tuple[str, Any]:
    if store == "sqlite":
        path = workdir / f"{uuid.uuid4().hex}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    sep = "&" if "?" in POSTGRES else "?"
    return f"{POSTGRES}{sep}options=-csearch_path%3D{schema}", drop


def measure(store: str, n: int, workdir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"store": store, "n": n}
    for role in ("baseline", "replay", "replay_audit"):
        url, cleanup = fresh_url(store, workdir)
        try:
            populate(url, n)
            result = child(role.removesuffix("_audit"), url, audit=role.endswith("_audit"))
            row[role] = result
        finally:
            cleanup()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--child", choices=["baseline", "replay"])
    parser.add_argument("--url")
    parser.add_argument("--audit", action="store_true")
    args = parser.parse_args()
    if args.child:
        started = time.perf_counter()
        report = baseline(args.url) if args.child == "baseline" else replay(args.url, args.audit)
        seconds = time.perf_counter() - started
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "rss_mib": rss_mib, "report": report}))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                row = measure(store, n, Path(tmp))
                rows.append(row)
                base, rep, aud = row["baseline"], row["replay"], row["replay_audit"]
                print(
                    f"{store:8} N={n:>7}: baseline {base['seconds']:7.2f}s | replay {rep['seconds']:7.2f}s "
                    f"(x{rep['seconds'] / base['seconds']:.2f}, peak RSS {rep['rss_mib']:.0f} MiB) | "
                    f"replay+audit {aud['seconds']:7.2f}s (x{aud['seconds'] / base['seconds']:.2f}, "
                    f"peak RSS {aud['rss_mib']:.0f} MiB) | changed {rep['report']['changed']}",
                    flush=True,
                )
        for store in args.stores.split(","):
            mine = sorted((r for r in rows if r["store"] == store), key=lambda r: r["n"])
            if len(mine) >= 2:
                small, large = mine[0], mine[-1]
                for key in ("replay", "replay_audit"):
                    ratio = large[key]["rss_mib"] / small[key]["rss_mib"]
                    print(f"{store:8} {key}: peak RSS N={large['n']} / N={small['n']} = x{ratio:.2f}")


if __name__ == "__main__":
    main()
