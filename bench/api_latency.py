"""API latency and throughput (issue 15): ``handover serve`` (authentication off, no Kafka: the in-process worker
drains the store's event queue while the requests come in) on SQLite and on PostgreSQL, in the same run.

C concurrent clients (httpx, asyncio, keep-alive) send N one-asset transfer requests between them (each request a
different asset; 50 pairs of users of one organisation), after a warm-up of C requests that is not counted. Prints,
per store side by side: requests/s over the N, the latency percentiles (p50, p95, p99, max), the requests not
accepted, the connection errors (a kept-alive connection the server closed: the request is sent again with its
``X-Request-ID``, its latency counted from the first attempt), how long after the last answer the in-process worker
had processed every event (``/metrics``), and the outcomes of the events (each request's status, read afterwards).
Then, for comparison, the same clients send N status requests of an unknown request id (one indexed read, a 404):
what the HTTP stack, the clients and the machine allow without a write.

    .venv/bin/python bench/api_latency.py                          # N = 2,000, C = 50, both stores
    .venv/bin/python bench/api_latency.py --requests 500 --stores sqlite
    .venv/bin/python bench/api_latency.py --profile /tmp/prof      # the servers under pyinstrument

PostgreSQL: ``HANDOVER_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``); the run uses a
fresh schema, dropped at the end. Target on SQLite: p99 < 100 ms and >= 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from read_lock import HANDOVER, TRANSFER, body, free_port

PAIRS = 50
POSTGRES = os.environ.get("HANDOVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def fixture(n: int) -> dict[str, Any]:
    """An admin, 50 (from, to) pairs of creators of org-1, and ``n`` assets spread over the from-users."""
    user = {"firstName": "", "lastName": "", "isDeleted": False, "rootOrgId": "org-1"}
    users = [{**user, "id": "u-admin", "userName": "admin", "roles": ["ORG_ADMIN"]}]
    for p in range(PAIRS):
        users += [{**user, "id": f"u-a{p}", "userName": f"a{p}", "roles": ["CONTENT_CREATOR"]},
                  {**user, "id": f"u-b{p}", "userName": f"b{p}", "roles": ["CONTENT_CREATOR"]}]
    assets = [{"identifier": f"do_{i:06d}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
               "visibility": "Default", "createdBy": f"u-a{i % PAIRS}", "creator": "A", "originData": None}
              for i in range(n)]
    return {"users": users, "course_batches": [], "assets": assets}


def request_body(i: int) -> dict[str, Any]:
    return body("org-1", "u-admin", f"u-a{i % PAIRS}", f"u-b{i % PAIRS}", [f"do_{i:06d}"])


@contextmanager
def postgres_schema() -> Iterator[str]:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in POSTGRES else "?"
        yield f"{POSTGRES}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                         "AND pid <> pg_backend_pid()", (schema,))
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def serving(url: str, work: Path, n: int, profile: Path | None, name: str) -> Iterator[str]:
    env = {**os.environ, "HANDOVER_STORE": url, "HANDOVER_AUTH_MODE": "none", "HANDOVER_KAFKA_BROKER_SERVERS": ""}
    (work / "fixture.json").write_text(json.dumps(fixture(n)))
    subprocess.run([HANDOVER, "init"], env=env, check=True, capture_output=True)
    subprocess.run([HANDOVER, "load", str(work / "fixture.json")], env=env, check=True, capture_output=True)
    port = free_port()
    command = [HANDOVER, "serve", "--port", str(port)]
    if profile is not None:
        command = [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--outfile",
                   str(profile / f"serve-{name}.txt"), "-m", "handover.entrypoints.cli", *command[1:]]
    base = f"http://127.0.0.1:{port}"
    with (work / f"serve-{name}.log").open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    raise SystemExit(f"handover serve exited with {server.returncode}; see {work / name}.log")
                time.sleep(0.2)
            yield base
        finally:
            server.terminate()
            server.wait(60)


async def load(base: str, first: int, count: int, clients: int) -> tuple[list[float], int, int, float]:
    """(latencies in seconds, requests not accepted, connection errors retried, seconds for all) of ``count``
    requests from ``clients`` clients."""
    latencies: list[float] = []
    errors = retried = 0
    todo = iter(range(first, first + count))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, retried
        for i in todo:
            started = time.perf_counter()
            status = 0
            for attempt in range(2):  # a kept-alive connection the server closed meanwhile: once more
                try:
                    answer = await http.post(TRANSFER, json=request_body(i), headers={"X-Request-ID": f"r-{i}"})
                except httpx.TransportError as exc:
                    print(f"request r-{i}: {type(exc).__name__} {exc}", file=sys.stderr)
                    retried += 1
                    continue
                # 409 on the second attempt: the first was accepted (the request id is taken)
                status = 200 if attempt == 1 and answer.status_code == 409 else answer.status_code
                break
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, errors, retried, time.perf_counter() - started


async def unknown_status(base: str, count: int, clients: int) -> tuple[list[float], float]:
    """(latencies, seconds for all) of ``count`` status requests of an unknown request id (one indexed read, a 404):
    what the HTTP stack and the clients cost without a write."""
    latencies: list[float] = []
    todo = iter(range(count))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in todo:
            started = time.perf_counter()
            await http.get(f"{TRANSFER}/no-such-request")
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, time.perf_counter() - started


def processed(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("total_events_count_total "):
            return float(line.split()[1])
    return 0.0


def drained(base: str, total: int, first: int, count: int, timeout: float) -> tuple[float, dict[str, int]]:
    """(seconds until the worker had processed ``total`` events (``/metrics``), the outcomes of the events of
    requests ``first`` .. ``first + count - 1`` by their status, read afterwards)."""
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=60) as http:
        while processed(http) < total:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the worker processed only {processed(http):.0f} of {total} events in {timeout} s")
            time.sleep(0.02)
        after = time.monotonic() - started
        outcomes: dict[str, int] = {}
        for i in range(first, first + count):
            for event in http.get(f"{TRANSFER}/r-{i}").json()["result"]["events"]:
                outcomes[event["outcome"]] = outcomes.get(event["outcome"], 0) + 1
    return after, outcomes


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(url: str, name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n, clients = args.requests, args.clients
    with serving(url, work, clients + n, args.profile, name) as base:
        asyncio.run(load(base, 0, clients, clients))  # warm-up, not counted
        latencies, errors, retried, seconds = asyncio.run(load(base, clients, n, clients))
        after, outcomes = drained(base, clients + n, clients, n, args.timeout)
        reads, read_seconds = asyncio.run(unknown_status(base, n, clients))
    return {"name": name, "rate": n / seconds, "seconds": seconds, "errors": errors, "retried": retried, "after": after,
            "outcomes": outcomes, **{f"p{p}": percentile(latencies, p) * 1000 for p in (50, 95, 99, 100)},
            "read_rate": n / read_seconds, "read_p50": percentile(reads, 50) * 1000,
            "read_p99": percentile(reads, 99) * 1000}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests counted (default 2,000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--stores", default="sqlite,postgresql", help="sqlite, postgresql or both (the default)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the worker may take to catch up")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a directory: run the servers under pyinstrument, a text report per store")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs); {args.requests:,} requests from "
          f"{args.clients} clients, one asset each, after {args.clients} not counted")
    results = []
    with tempfile.TemporaryDirectory(prefix="handover-api-bench-") as tmp:
        for store in args.stores.split(","):
            work = Path(tmp) / store
            work.mkdir()
            if store == "sqlite":
                results.append(measure(f"sqlite:///{work / 'handover.db'}", store, args, work))
            elif store == "postgresql":
                with postgres_schema() as url:
                    results.append(measure(url, store, args, work))
            else:
                raise SystemExit(f"unknown store {store!r}")
    rows = [
        ("requests/s", lambda r: f"{r['rate']:,.0f}"),
        ("seconds", lambda r: f"{r['seconds']:.2f}"),
        ("p50 ms", lambda r: f"{r['p50']:.1f}"),
        ("p95 ms", lambda r: f"{r['p95']:.1f}"),
        ("p99 ms", lambda r: f"{r['p99']:.1f}"),
        ("max ms", lambda r: f"{r['p100']:.1f}"),
        ("requests not accepted", lambda r: str(r["errors"])),
        ("connection errors", lambda r: f"{r['retried']} (retried)"),
        ("worker done after (s)", lambda r: f"{r['after']:.2f}"),
        ("event outcomes", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))),
        ("unknown status: req/s", lambda r: f"{r['read_rate']:,.0f}"),
        ("unknown status: p50 ms", lambda r: f"{r['read_p50']:.1f}"),
        ("unknown status: p99 ms", lambda r: f"{r['read_p99']:.1f}"),
    ]
    print(f"\n{'':24}" + "".join(f"{r['name']:>24}" for r in results))
    for label, cell in rows:
        print(f"{label:24}" + "".join(f"{cell(r):>24}" for r in results))
    if len(results) == 2:
        a, b = results
        print(f"{a['name']} / {b['name']}: requests/s {a['rate'] / b['rate']:.2f}, p99 {a['p99'] / b['p99']:.2f}")
    for r in results:
        if r["name"] == "sqlite":
            met = r["p99"] < 100 and r["rate"] >= 1000
            print(f"target on SQLite (p99 < 100 ms and >= 1,000 requests/s): {'met' if met else 'NOT met'}")
    print(f"load average at end: {load_average()}")
    if any(r["errors"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
