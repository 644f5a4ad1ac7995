"""``replay`` throughput on ``sunbird://``, with the round trips per event to each server, side by side.

The servers are the test servers of tests/servers (started here, stopped at the end):

- Cassandra: real Apache Cassandra 2.1.0 (the LMS ``course_batch`` table, and handover's own keyspace: ledger,
  notification record, audit);
- Elasticsearch: the noida-db emulator of the Elasticsearch 8 REST API (not Lucene Elasticsearch: its refresh,
  search and bulk costs are the emulator's);
- Neo4j: ArcadeDB speaking Bolt and Cypher (another product, not Neo4j);
- userorg: ``tests/integration/userorg_server.py``, a stand-in written for the tests (an HTTP/1.0 server in a
  thread of this process: a new connection per request).

A deployment is seeded as Sunbird has it (``tests/sunbird_deployment.py``) with the groups of
``tests/streams.py`` (about 4.2 events per group: a single-asset transfer, a transfer of everything, a
delete-user clean-up with an admin email, a redelivery; every 10th group two rejections), then ``handover
replay`` runs in this process over the N events. Printed: events/s of the replay command (from start to exit,
connections included), and the requests each server was sent, in total and per event, as the adapters count
them (``handover_store_requests_total{store, kind}``: a CQL statement or LOGGED batch, an HTTP request, a
Cypher statement; a Cassandra read of k keys sent concurrently counts k). The userorg count is checked against
the requests the stand-in received. The report and the dump are then compared with the embedded (SQLite) store's
replay of the same events.

    .venv/bin/python bench/sunbird_throughput.py                    # N = 300
    .venv/bin/python bench/sunbird_throughput.py --events 1000
    .venv/bin/python bench/sunbird_throughput.py --profile /tmp/replay.txt   # pyinstrument (dev extra)

Target (issue 15): at least 100 events/s on these servers. Figures: README, "Speed on sunbird://".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.servers, tests.streams and tests.sunbird_deployment, shared with the tests

from tests.integration.userorg_server import FakeUserOrg, serve  # noqa: E402
from tests.servers import arcadedb, cassandra, noida  # noqa: E402
from tests.servers.process import ServerProcess  # noqa: E402
from tests.streams import groups_for  # noqa: E402
from tests.sunbird.test_streams import comparable, embedded_replay, sunbird_dump, sunbird_stream  # noqa: E402
from tests.sunbird_deployment import Deployment  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from handover import metrics  # noqa: E402
from handover.domain.model import user_from_json  # noqa: E402
from handover.entrypoints.cli import app  # noqa: E402

STORES = ("cassandra", "elasticsearch", "neo4j", "userorg")


def start(server: ServerProcess, timeout: float) -> ServerProcess:
    began = time.monotonic()
    server.start(timeout)
    print(f"  {server.name} ready in {time.monotonic() - began:.1f}s", flush=True)
    return server


@contextmanager
def servers(directory: Path) -> Iterator[tuple[ServerProcess, ServerProcess, ServerProcess]]:
    for module in (cassandra, arcadedb, noida):
        problem = module.problem()
        if problem:
            raise SystemExit(f"cannot start the test servers: {problem}")
    with ExitStack() as stack:
        made = []
        for name, factory, timeout in (
            ("cassandra", cassandra.cassandra_server, 180),
            ("arcadedb", arcadedb.arcadedb_server, 180),
            ("noida", noida.noida_server, 60),
        ):
            (directory / name).mkdir()
            made.append(stack.enter_context(start(factory(directory / name), timeout)))
        yield made[0], made[1], made[2]


def request_counts() -> dict[tuple[str, str], float]:
    """(store, kind) -> requests counted so far by the adapters."""
    out: dict[tuple[str, str], float] = {}
    for family in metrics.store_requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.labels["store"], sample.labels["kind"])] = sample.value
    return out


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--store", "sunbird://"], env=env)
    if result.exit_code != 0:
        raise SystemExit(f"handover {args[0]} failed ({result.exit_code}): {result.output[-2000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300, help="about how many events (default 300)")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile of the replay to this file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the replay (e.g. page_size=2), as HANDOVER_KEY")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="handover-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        print("starting the test servers", flush=True)
        cql, bolt, es = stack.enter_context(servers(tmp))
        userorg = FakeUserOrg()
        deployment = Deployment(
            cassandra_port=cql.port,
            es_url=f"http://127.0.0.1:{es.port}",
            bolt_uri=f"bolt://127.0.0.1:{bolt.port}",
            userorg_url=stack.enter_context(serve(userorg)),
        )
        deployment.create()
        stack.callback(deployment.drop)

        fixture, events = sunbird_stream(groups_for(args.events))
        userorg.add(*(user_from_json(u) for u in fixture["users"]))
        t0 = time.monotonic()
        deployment.seed(fixture)
        print(f"{len(events)} events; seeded {len(fixture['course_batches'])} batches, {len(fixture['assets'])} "
              f"nodes, {len(fixture['users'])} users in {time.monotonic() - t0:.1f}s", flush=True)
        env = {**deployment.env}
        for item in args.set:
            key, _, value = item.partition("=")
            env[f"HANDOVER_{key.upper().replace('.', '_')}"] = value
        cli(env, "init")

        source, report = tmp / "events.jsonl", tmp / "report.jsonl"
        source.write_bytes(b"\n".join(events) + b"\n")
        before, served_before = request_counts(), len(userorg.requests)
        profiler = None
        if args.profile is not None:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        t0 = time.perf_counter()
        cli(env, "replay", str(source), "--report", str(report))
        seconds = time.perf_counter() - t0
        if profiler is not None:
            profiler.stop()
            args.profile.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        after, served = request_counts(), len(userorg.requests) - served_before

        n = len(events)
        print(f"\nreplay of {n} events: {seconds:.2f}s, {n / seconds:.1f} events/s "
              f"(target >= 100: {'met' if n / seconds >= 100 else 'NOT met'})")
        print(f"{'requests':<10}" + "".join(f"{s:>15}" for s in STORES) + f"{'all':>10}")
        totals = {s: 0.0 for s in STORES}
        for kind in ("read", "write"):
            row = {s: after.get((s, kind), 0) - before.get((s, kind), 0) for s in STORES}
            for s in STORES:
                totals[s] += row[s]
            print(f"{kind:<10}" + "".join(f"{row[s]:>15,.0f}" for s in STORES) + f"{sum(row.values()):>10,.0f}")
        print(f"{'total':<10}" + "".join(f"{totals[s]:>15,.0f}" for s in STORES) + f"{sum(totals.values()):>10,.0f}")
        print(f"{'per event':<10}" + "".join(f"{totals[s] / n:>15.2f}" for s in STORES)
              + f"{sum(totals.values()) / n:>10.2f}")
        if served != totals["userorg"]:
            print(f"MISMATCH: the userorg stand-in received {served} requests, the adapter counted "
                  f"{totals['userorg']:.0f}")

        expected_report, expected_dump = embedded_replay(tmp / "embedded.db", fixture, events)
        got = [json.loads(line) for line in report.read_text().splitlines()]
        same = got == expected_report and comparable(sunbird_dump(env)) == comparable(expected_dump)
        print(f"report and dump equal the embedded store's: {'yes' if same else 'NO'}")
        if args.profile is not None:
            print(f"profile: {args.profile}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("HANDOVER_LOG_LEVEL", "WARNING")
    main()
