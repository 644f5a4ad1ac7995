"""Bulk ownership transfer on the SQL stores (issue 15): handover against raw SQL, side by side, in one run.

The data: a user who created N course batches (half of them also mentored by that user, a third completed) and
N assets, with as much data owned by another user (2N batches, 2N assets in all). For each store and N it prints:

- ``baseline``: the transfer's updates as set-based SQL statements on indexed tables, plus the ledger row (no
  audit), in one transaction, on handover's own engine and connection settings (``sql.create_engine``: SQLite
  WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``; PostgreSQL the same pool); ``transfer``: the same transfer
  through handover's engine as ``replay`` runs it, audit on; their ratio (issue 15 target: <= 1.5, audit rows
  included);
- ``raw+audit``, for information only (the target is against ``baseline``): the baseline's statements plus, before
  each UPDATE, an INSERT ... SELECT of the audit rows handover writes for it (the same rows: one per changed record
  and field), into the same audit table and indexes; and transfer / raw+audit, what handover costs beyond the
  audit rows themselves;
- ``rows only``, for information: the ``raw+audit`` statements on a copy whose audit table has no secondary index
  (``drop_audit_indexes``), against ``baseline``: what SPEC 10's audit rows (one per changed record and field)
  cost the database with no index to keep. At 03:29-03:35 UTC on 2026-11-30 (load 0.74 -> 1.18, the default
  command): SQLite x1.65 / x1.70 of the baseline at 50k / 200k, PostgreSQL x1.46 / x1.46, against a target of
  1.5 for the whole transfer;
- ``undo``: ``handover undo MID`` of that transfer (the CLI's ``Undoer``), and undo / transfer (target <= 1.5);
- ``preview``: the service-layer preview the API and console call (``TransferRequests.preview`` of the Lern
  request body), and preview / transfer (target <= 0.1);
- ``dry-run``: ``replay --dry-run`` of the transfer event (``SqlStore.preview(carry_changes=True)``), and
  dry-run / transfer;
- ``load``: ``handover load`` of the 2N + 2N rows from a fixture file (read as a stream, parsed and upserted
  5,000 records at a time in one transaction: ``json_stream.load_fixture``), against ``raw``: the same file
  read and parsed whole (``json.loads``) and the same rows (users, batches, mentor index, assets) inserted with
  the driver's ``executemany`` into the same empty schema; their ratio (target <= 2);
- the peak RSS (MiB) of each handover step, each run in its own process (so peaks do not mix);
- on SQLite a second line: the CPU seconds of the same steps (each process's own; on SQLite that is all of the
  database's work but not its waits for the disk), steadier than wall time when the machine is shared.

    .venv/bin/python bench/bulk_transfer.py                     # N = 50,000 and 200,000; SQLite and PostgreSQL
    .venv/bin/python bench/bulk_transfer.py --sizes 2000 --stores sqlite
    .venv/bin/python bench/bulk_transfer.py --sizes 50000 --stores sqlite --profile /tmp/prof   # pyinstrument

Every step runs on a freshly populated copy (preview and dry-run, which change nothing, on the copy the transfer
and its undo then run on). Figures and the machine's load: README, "How a large transfer stays fast and small";
e.g. at commit 5ba43de (load average 4.9, 2 shared cores), ``--sizes 50000,200000 --stores sqlite`` printed:

    sqlite   N=  50000 | baseline   0.25s  transfer   0.85s x3.33 | undo   1.47s x1.74 | preview   0.10s x0.113 | ...
    sqlite   N= 200000 | baseline   1.05s  transfer   4.47s x4.27 | undo   7.77s x1.74 | preview   0.20s x0.045 | ...

After the undo's audit rows were written by one INSERT ... SELECT for all its set-based fields (commit d1fb202;
load average 5.76 at start, 3.82 at end), the same command printed:

    sqlite   N=  50000 | baseline   0.37s  transfer   1.35s x3.65 | undo   1.36s x1.01 | preview   0.12s x0.088 | ...
    sqlite   N= 200000 | baseline   1.08s  transfer   3.75s x3.47 | undo   5.29s x1.41 | preview   0.30s x0.080 | ...

and at 19:56 UTC (load 5.50 -> 4.18) undo 1.40s x1.33 at N = 50,000, 5.35s x1.50 at N = 200,000; the parent
commit 4556b3b in between (19:55 UTC, load 5.58 -> 5.80): 1.52s x1.58 and 5.97s x1.64. The ratio moves with the
load as much as with that change, which cut the undo's CPU time by about 9 % (README, "Second round on the undo").

Bulk round on the transfer (README, "Bulk round on the transfer"): each mentor list built once for its audit rows
(and on PostgreSQL written with them in one statement). ``--sizes 50000,200000 --stores sqlite``, parent a12bb05
(21:37 UTC, load 7.05) then this branch (21:43 UTC, load 9.73), the CPU lines:

    before sqlite N=  50000 | CPU s: baseline  0.46  transfer  1.89 x4.08 | raw+audit  1.49, transfer x1.26 of it | ...
    after  sqlite N=  50000 | CPU s: baseline  0.53  transfer  1.78 x3.34 | raw+audit  1.24, transfer x1.44 of it | ...
    before sqlite N= 200000 | CPU s: baseline  1.98  transfer  7.80 x3.95 | raw+audit  6.94, transfer x1.12 of it | ...
    after  sqlite N= 200000 | CPU s: baseline  2.32  transfer  7.53 x3.25 | raw+audit  4.97, transfer x1.52 of it | ...

Raw SQL writing the same audit rows costs 2.1-3.5 x the baseline's CPU there: the 1.5 x target, audit rows
included, is below what the database does with this audit table and its indexes.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

FROM, TO, OTHER, ADMIN = "u-from", "u-to", "u-other", "u-admin"
ORG = "org-1"
POSTGRES = os.environ.get("HANDOVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 10_000


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


def request_body() -> dict[str, Any]:
    """The Lern API request of the same transfer (what the console's form and ``POST .../preview`` send)."""

    def user(uid: str) -> dict[str, Any]:
        return {"userId": uid, "roles": [{"role": "CONTENT_CREATOR", "scope": [{"organisationId": ORG}]}]}

    return {"request": {"context": "User Deletion", "organisationId": ORG, "actionBy": {"userId": ADMIN},
                        "fromUser": user(FROM), "toUser": user(TO)}}


# --- data ---------------------------------------------------------------------------------------------


def fixture(n: int) -> dict[str, Any]:
    """The fixture as ``handover load`` reads it (SPEC 4)."""
    users = [
        {"id": uid, "userName": uid, "firstName": first, "lastName": "Bench", "rootOrgId": ORG, "roles": roles,
         "isDeleted": False}
        for uid, first, roles in ((FROM, "From", ["CONTENT_CREATOR"]), (TO, "To", ["CONTENT_CREATOR"]),
                                  (OTHER, "Other", ["CONTENT_CREATOR"]), (ADMIN, "Admin", ["ORG_ADMIN"]))
    ]
    batches, assets = [], []
    for owner in (FROM, OTHER):
        for i in range(n):
            batches.append({
                "courseid": f"do_course_{owner}_{i // 100}",
                "batchid": f"b_{owner}_{i}",
                "name": f"batch {i}",
                "status": 2 if i % 3 == 0 else i % 2,
                "createdby": owner,
                "mentors": [owner, "u-mentor"] if i % 2 == 0 else ["u-mentor"],
            })
            assets.append({
                "identifier": f"do_{owner}_{i}",
                "objectType": "Question" if i % 2 else "QuestionSet",
                "schemaVersion": "1.1" if i % 4 else None,
                "status": "Live",
                "visibility": "Default",
                "createdBy": owner,
                "creator": f"{owner} name",
                "originData": None,
            })
    return {"users": users, "course_batches": batches, "assets": assets}


def rows(doc: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """The fixture's rows per table, as the driver takes them (JSON columns as text)."""
    dumps = json.dumps
    return {
        "users": [(u["id"], u["userName"], u["firstName"], u["lastName"], u["rootOrgId"], dumps(u["roles"]),
                   u["isDeleted"]) for u in doc["users"]],
        "course_batch": [(b["courseid"], b["batchid"], b["name"], b["status"], b["createdby"], dumps(b["mentors"]))
                         for b in doc["course_batches"]],
        "course_batch_mentor": [(m, b["courseid"], b["batchid"]) for b in doc["course_batches"]
                                for m in dict.fromkeys(b["mentors"])],
        "asset": [(a["identifier"], a["objectType"], a["schemaVersion"], a["status"], a["visibility"],
                   a["createdBy"], a["creator"], None, None) for a in doc["assets"]],
    }


COLUMNS = {
    "users": '"id", "userName", "firstName", "lastName", "rootOrgId", "roles", "isDeleted"',
    "course_batch": '"courseid", "batchid", "name", "status", "createdby", "mentors"',
    "course_batch_mentor": '"userid", "courseid", "batchid"',
    "asset": '"identifier", "objectType", "schemaVersion", "status", "visibility", "createdBy", "creator",'
             ' "originData", "extra"',
}


def init_schema(url: str) -> None:
    from handover.bootstrap import bootstrap

    app = bootstrap(url)  # the SQL queue's tables too, as `handover init`
    app.store.init_schema()  # type: ignore[attr-defined]
    app.store.engine.dispose()  # type: ignore[attr-defined]


def raw_load(url: str, path: Path) -> None:
    """The fixture file read and parsed, its rows inserted with the driver's executemany, committed."""
    from handover.adapters.sql_schema import engine_url

    table_rows = rows(json.loads(path.read_text(encoding="utf-8")))
    if url.startswith("sqlite"):
        import sqlite3

        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        mark = "?"
    else:
        import psycopg

        conn = psycopg.connect(engine_url(url).replace("postgresql+psycopg://", "postgresql://"))
        mark = "%s"
    with conn:
        cur = conn.cursor()
        for table, values in table_rows.items():
            marks = ", ".join([mark] * len(values[0]))
            sql = f'INSERT INTO "{table}" ({COLUMNS[table]}) VALUES ({marks})'
            for start in range(0, len(values), CHUNK):
                cur.executemany(sql, values[start : start + CHUNK])
    conn.close()


def populate(url: str, path: Path) -> None:
    init_schema(url)
    raw_load(url, path)
    # Statistics as a store in service has them (autovacuum would get there later): without them PostgreSQL
    # plans keyed bulk writes as scans. Done for both stores, before every measured step.
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


def drop_audit_indexes(url: str) -> None:
    """Drop the audit table's secondary indexes (for ``rows only``: what SPEC 10's rows, one per changed record and
    field, cost the database with no index to keep; its primary key stays)."""
    from handover.adapters.sql_schema import AUDIT_TEXT_INDEXES, audit

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # by name: SQLAlchemy does not reflect SQLite's indexes on expressions
        for name in sorted({str(index.name) for index in audit.indexes} | set(AUDIT_TEXT_INDEXES)):
            conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
        left = conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' AND sql IS NOT NULL"
            if engine.dialect.name == "sqlite" else
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'audit'"
            " AND indexname NOT LIKE '%%pkey'"
        ).scalar()
        assert left == 0, f"{left} audit index(es) left"
    engine.dispose()


# --- the measured steps (each in its own process) ---------------------------------------------------------


ASSET_MATCH = (
    "\"createdBy\" = :f AND \"objectType\" IN ('Question', 'QuestionImage', 'QuestionSet', 'QuestionSetImage')"
    " AND coalesce(\"schemaVersion\", '1.0') IN ('1.0', '1.1')"
)


def baseline(url: str, *, audited: bool = False) -> dict[str, Any]:
    """The same updates as set-based SQL statements, and the ledger row, in one transaction, on handover's engine
    (its connection settings: SQLite WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``). ``audited`` (the
    ``raw+audit`` line, for information only): before each UPDATE, an INSERT ... SELECT of the audit rows handover
    writes for it (one per changed record and field, the values as JSON), into the same audit table and indexes
    (the ``rows only`` figure: on a copy whose audit table has no secondary index, ``drop_audit_indexes``)."""
    from handover.adapters import sql

    engine = sql.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    params = {"f": FROM, "t": TO, "fq": json.dumps(FROM), "tq": json.dumps(TO), "n": "To Bench",
              "nq": json.dumps("To Bench"), "mid": f"LP.baseline.{uuid.uuid4()}"}
    mentors_expr = "replace(mentors::text, :fq, :tq)::json" if pg else "replace(mentors, :fq, :tq)"
    in_mentored = (
        "(courseid, batchid) IN (SELECT m.courseid, m.batchid FROM course_batch_mentor m"
        " JOIN course_batch b USING (courseid, batchid) WHERE m.userid = :f AND b.status IN (0, 1))"
    )
    quoted = "to_json({})" if pg else "json_quote({})"
    as_json = "CAST({} AS JSON)" if pg else "{}"

    def audit_rows(conn: Any, store: str, key: str, field: str, before: str, after: str, source: str) -> None:
        if audited:
            conn.execute(sa.text(
                "INSERT INTO audit (mid, request_id, store, record_key, field, before, after, at) "
                f"SELECT :mid, NULL, '{store}', {key}, '{field}', {before}, {after}, CURRENT_TIMESTAMP {source}"
            ), params)

    batch_key = "courseid || '/' || batchid"
    with engine.begin() as conn:
        audit_rows(conn, "course_batch", batch_key, "mentors", "mentors", mentors_expr,
                   f"FROM course_batch WHERE {in_mentored}")
        conn.execute(sa.text(f"UPDATE course_batch_mentor SET userid = :t WHERE userid = :f AND {in_mentored}"),
                     params)
        conn.execute(
            sa.text(
                f"UPDATE course_batch SET mentors = {mentors_expr} WHERE (courseid, batchid) IN "
                "(SELECT courseid, batchid FROM course_batch_mentor WHERE userid = :t) AND status IN (0, 1)"
            ),
            params,
        )
        audit_rows(conn, "course_batch", batch_key, "createdby", quoted.format("createdby"), as_json.format(":tq"),
                   "FROM course_batch WHERE createdby = :f AND status IN (0, 1)")
        conn.execute(
            sa.text("UPDATE course_batch SET createdby = :t WHERE createdby = :f AND status IN (0, 1)"), params
        )
        for field, value in (("createdBy", ":tq"), ("creator", ":nq")):
            audit_rows(conn, "asset", "identifier", field, quoted.format(f'"{field}"'), as_json.format(value),
                       f"FROM asset WHERE {ASSET_MATCH}")
        conn.execute(sa.text(f'UPDATE asset SET "createdBy" = :t, creator = :n WHERE {ASSET_MATCH}'), params)
        conn.execute(
            sa.text(
                "INSERT INTO ledger (mid, action, outcome, skipped, changed_batches, changed_assets, processed_at,"
                " detail) VALUES (:mid, 'ownership-transfer', 'applied', '[]', 0, 0, CURRENT_TIMESTAMP, '')"
            ),
            params,
        )
    engine.dispose()
    return {}


def transfer(url: str) -> dict[str, Any]:
    """What ``handover replay`` does for the one event (audit on, the default settings)."""
    from handover.bootstrap import bootstrap

    doc = event()
    outcome = bootstrap(url).engine().process(json.dumps(doc))
    assert outcome.outcome == "applied", outcome
    return {"mid": doc["mid"], "changed": outcome.report()["changed"]}


def undo(url: str, mid: str) -> dict[str, Any]:
    """What ``handover undo MID`` does."""
    from handover.bootstrap import bootstrap

    result = bootstrap(url).undoer().undo_event(mid)
    assert result.conflicts == 0, result.to_json()
    return {"reverted": result.reverted}


def preview(url: str) -> dict[str, Any]:
    """The preview the API (``POST .../transfer/preview``) and the console's transfer form run."""
    from handover.bootstrap import api_parts, bootstrap

    app = bootstrap(url)
    answer = api_parts(app).service(app).preview(request_body(), "bench-preview")
    return {"changed": answer["changed"], "records": sum(len(e["records"]) for e in answer["events"])}


def dry_run(url: str) -> dict[str, Any]:
    """What ``handover replay --dry-run`` does for the one event."""
    from handover.bootstrap import bootstrap

    app = bootstrap(url)
    with app.store.preview(carry_changes=True) as factory:  # type: ignore[attr-defined]
        outcome = app.engine(uow_factory=factory).process(json.dumps(event()))
    return {"changed": outcome.report()["changed"]}


def load(url: str, path: Path) -> dict[str, Any]:
    """What ``handover load FILE`` does: read and parse the file as a stream, upsert its records in chunks."""
    from handover.bootstrap import bootstrap
    from handover.service.json_stream import load_fixture

    with path.open("rb") as file:
        return load_fixture(bootstrap(url).store.load, file)  # type: ignore[attr-defined]


STEPS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "baseline": lambda a: baseline(a.url),
    "baseline_audit": lambda a: baseline(a.url, audited=True),
    "baseline_rows": lambda a: baseline(a.url, audited=True),  # on a copy after drop_audit_indexes
    "transfer": lambda a: transfer(a.url),
    "undo": lambda a: undo(a.url, a.mid),
    "preview": lambda a: preview(a.url),
    "dry_run": lambda a: dry_run(a.url),
    "load": lambda a: load(a.url, Path(a.file)),
    "raw_load": lambda a: (raw_load(a.url, Path(a.file)), {})[1],
}


def peak_rss_mib() -> float:
    """This process's peak RSS: ``VmHWM`` (Linux keeps ``ru_maxrss`` across exec, so that would be the parent's)."""
    try:
        for text in Path("/proc/self/status").read_text().splitlines():
            if text.startswith("VmHWM:"):
                return int(text.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- orchestration --------------------------------------------------------------------------------------


PROFILE: list[str] = []  # [directory, name prefix] with --profile


def child(step: str, url: str, **extra: str) -> dict[str, Any]:
    """Run one measured step in a fresh process; its seconds, peak RSS (MiB) and result."""
    cmd = [sys.executable, __file__, "--child", step, "--url", url]
    if PROFILE:
        cmd += ["--profile", str(Path(PROFILE[0]) / f"{PROFILE[1]}-{step}.txt")]
    for key, value in extra.items():
        cmd += [f"--{key}", value]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


class Copies:
    """Fresh empty databases of one store, dropped at the end."""

    def __init__(self, store: str, workdir: Path) -> None:
        self.store, self.workdir, self.cleanups = store, workdir, list[Callable[[], None]]()

    def fresh(self) -> str:
        if self.store == "sqlite":
            path = self.workdir / f"{uuid.uuid4().hex}.db"
            self.cleanups.append(lambda: [p.unlink(missing_ok=True) for p in path.parent.glob(path.name + "*")])
            return f"sqlite:///{path}"
        import psycopg

        schema = "bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')

        def drop() -> None:
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

        self.cleanups.append(drop)
        sep = "&" if "?" in POSTGRES else "?"
        return f"{POSTGRES}{sep}options=-csearch_path%3D{schema}"

    def drop(self) -> None:
        for cleanup in self.cleanups:
            cleanup()
        self.cleanups.clear()


def measure(store: str, n: int, workdir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if PROFILE:
        PROFILE[1] = f"{store}-{n}"
    path = workdir / f"fixture-{n}.json"
    if not path.exists():
        path.write_text(json.dumps(fixture(n)), encoding="utf-8")
    copies = Copies(store, workdir)
    try:
        url = copies.fresh()
        populate(url, path)
        yield "baseline", child("baseline", url)
        url = copies.fresh()
        populate(url, path)
        yield "baseline_audit", child("baseline_audit", url)
        url = copies.fresh()
        populate(url, path)
        drop_audit_indexes(url)
        yield "baseline_rows", child("baseline_rows", url)
        url = copies.fresh()
        populate(url, path)
        yield "preview", child("preview", url)
        yield "dry_run", child("dry_run", url)
        done = child("transfer", url)
        yield "transfer", done
        yield "undo", child("undo", url, mid=done["result"]["mid"])
        copies.drop()
        for step in ("raw_load", "load"):
            url = copies.fresh()
            init_schema(url)
            yield step, child(step, url, file=str(path))
    finally:
        copies.drop()


def line(store: str, n: int, r: dict[str, dict[str, Any]]) -> str:
    def s(step: str) -> float:
        return float(r[step]["seconds"])

    def mib(step: str) -> str:
        return f"{r[step]['rss_mib']:.0f}"

    return (
        f"{store:8} N={n:>7} | baseline {s('baseline'):6.2f}s  transfer {s('transfer'):6.2f}s "
        f"x{s('transfer') / s('baseline'):.2f} | raw+audit {s('baseline_audit'):6.2f}s, transfer "
        f"x{s('transfer') / s('baseline_audit'):.2f} of it | rows only {s('baseline_rows'):6.2f}s "
        f"x{s('baseline_rows') / s('baseline'):.2f} of baseline | "
        f"undo {s('undo'):6.2f}s x{s('undo') / s('transfer'):.2f} | "
        f"preview {s('preview'):6.2f}s x{s('preview') / s('transfer'):.3f} | "
        f"dry-run {s('dry_run'):6.2f}s x{s('dry_run') / s('transfer'):.2f} | "
        f"raw load {s('raw_load'):6.2f}s  load {s('load'):6.2f}s x{s('load') / s('raw_load'):.2f} | "
        f"peak RSS MiB transfer {mib('transfer')} undo {mib('undo')} preview {mib('preview')} "
        f"dry-run {mib('dry_run')} load {mib('load')} | changed {r['transfer']['result']['changed']}"
    )


def cpu_line(store: str, n: int, r: dict[str, dict[str, Any]]) -> str:
    """The same steps' CPU seconds in their own process: on SQLite all the database's work (not its waits for the
    disk), steadier than wall time on a shared machine. (On PostgreSQL the server's work is not in them.)"""

    def c(step: str) -> float:
        return float(r[step]["cpu"])

    return (
        f"{store:8} N={n:>7} | CPU s: baseline {c('baseline'):5.2f}  transfer {c('transfer'):5.2f} "
        f"x{c('transfer') / c('baseline'):.2f} | raw+audit {c('baseline_audit'):5.2f}, transfer "
        f"x{c('transfer') / c('baseline_audit'):.2f} of it | rows only {c('baseline_rows'):5.2f} "
        f"x{c('baseline_rows') / c('baseline'):.2f} of baseline | "
        f"undo {c('undo'):5.2f} x{c('undo') / c('transfer'):.2f} | "
        f"preview {c('preview'):5.2f} x{c('preview') / c('transfer'):.3f} | raw load {c('raw_load'):5.2f}  "
        f"load {c('load'):5.2f} x{c('load') / c('raw_load'):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--child", choices=sorted(STEPS))
    parser.add_argument("--url")
    parser.add_argument("--mid")
    parser.add_argument("--file")
    parser.add_argument("--profile", help="a directory: each step's pyinstrument profile is written there")
    args = parser.parse_args()
    if args.child:
        import handover.adapters.sql
        import handover.adapters.sql_queue  # bootstrap imports it for the schema (0.1 s)
        import handover.bootstrap
        import handover.service.requests  # noqa: F401  (imports are not what is measured)

        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.005)
            profiler.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = STEPS[args.child](args)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler is not None:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_text(color=False, show_all=False), encoding="utf-8")
        rss_mib = peak_rss_mib()
        print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mib": rss_mib, "result": result}))
        return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        PROFILE[:] = [args.profile, ""]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)
    rows_done = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                results = dict(measure(store, n, Path(tmp)))
                rows_done.append((store, n, results))
                print(line(store, n, results), flush=True)
                if store == "sqlite":
                    print(cpu_line(store, n, results), flush=True)
        for store in args.stores.split(","):
            mine = sorted((r for r in rows_done if r[0] == store), key=lambda r: r[1])
            if len(mine) >= 2:
                (_, small_n, small), (_, large_n, large) = mine[0], mine[-1]
                ratios = ", ".join(f"{step} x{large[step]['rss_mib'] / small[step]['rss_mib']:.2f}"
                                   for step in ("transfer", "undo", "preview", "dry_run", "load"))
                print(f"{store:8} peak RSS N={large_n} / N={small_n}: {ratios}")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)


if __name__ == "__main__":
    main()
