"""API latency and throughput (issue 15): ``handover serve`` (authentication off, no Kafka) on SQLite and on
PostgreSQL, each in two set-ups side by side in the same run (``--worker``): "in-process", serve's own worker
drains the store's event queue while the requests come in (what ``scripts/run.sh`` and a plain ``handover serve``
do); "apart", ``serve --no-worker`` (through ``HANDOVER_QUEUE_WORKER_IN_PROCESS=false``) with ``handover
queue-worker --poll 0.05`` in a process of its own, whose CPU seconds are printed too.

C concurrent clients send N one-asset transfer requests between them (each request a different asset; 50 pairs of
users of one organisation), after a warm-up of C requests that is not counted. The clients run in their own
process(es) (``--client-processes``, default 1), apart from the server and from this one, on asyncio (uvloop when
installed), a kept-alive connection each, and send requests encoded before the clock starts through a minimal
HTTP/1.1 client (``Connection``): httpx (async) spent more CPU per request than the server (``--requests 300``: 1.36
s of client CPU for the 300 status reads against the server's 0.62 s), so it measured itself. Prints, per store side
by side: requests/s over the N, the latency percentiles (p50, p95, p99, max), the CPU seconds the server process and
the client processes used meanwhile (server CPU close to the wall seconds: the one server process is the limit), the
requests not accepted, the connection errors (a kept-alive connection the server closed: the request is sent again
with its ``X-Request-ID``, its latency counted from the first attempt), how long after the last answer the
worker had processed every event (the queue read by this process: nothing pending or in hand; the warm-up's events
are waited for before the clock starts), the requests/s end to end (N over the seconds of the
requests plus those until every event was processed: what can be kept up, where requests/s alone may borrow from a
worker left behind), and the outcomes of the events (each request's status, read afterwards). Then, for comparison,
the same clients send N status requests of an unknown request id (one indexed read, a 404): what the HTTP stack, the
clients and the machine allow without a write.

    .venv/bin/python bench/api_latency.py                          # N = 2,000, C = 50, both stores, both set-ups
    .venv/bin/python bench/api_latency.py --requests 500 --stores sqlite --worker in-process
    .venv/bin/python bench/api_latency.py --profile /tmp/prof      # the servers under pyinstrument

Now (third round: UUIDs from a buffer, group commit of the submits, users read together, the worker's look-ups
compiled once, the worker apart as a second set-up), the command of the first line above (N = 2,000, C = 50, one
client process), right after the same run of the bench and server at a12bb05 (load 9.45 -> 7.13, then 7.13 ->
11.65: other helpers' benchmarks on the 2 cores): SQLite 193 -> 231 requests/s (worker apart 301), p99 576.2 ->
561.9 ms (apart 368.8), server CPU 9.11 -> 6.46 s (apart 4.57 s + worker process 2.67 s); PostgreSQL 136 -> 117
requests/s (apart 89), p99 917.3 -> 716.2 ms (apart 1276.6). An earlier run of the new one (load 5.56 -> 9.45):
SQLite 242 (apart 148), PostgreSQL 65 (apart 111): at these loads runs differ by up to a factor of 2. A later
pair, ``--stores sqlite`` (load 4.61 -> 4.23, then 4.13 -> 4.96): 283 -> 340 requests/s (apart 241), p99 418.6 ->
293.1 ms (apart 540.6). The target is not met.

Before (the second round; README "Speed on the embedded store" has the whole table), the same command: uvloop +
httptools, load 5.55 -> 6.37: SQLite 720
requests/s, p99 160.6 ms, server CPU 2.63 s in 2.78 s, client CPU 0.09 s; PostgreSQL 334 requests/s, p99 340.7 ms;
unknown status 875 and 498 requests/s. With the queue worker's micro-batches of 50, load 3.97 -> 4.87: SQLite 647
requests/s, p99 180.4 ms, worker done 0.37 s after the last answer (5.30 s before); PostgreSQL 341 requests/s,
p99 354.2 ms, worker done after 7.22 s (37.93 s before). ``--stores sqlite`` with the worker's batch of 1 and of
50 in turn (load 5.58 -> 7.27): requests/s 687, 584, 701, 582; end to end 341, 540, 352, 528; 10, 50, 10 (load
6.31 -> 6.70): 698, 574, 701; end to end 501, 527, 504. With batches of 10 (now), both stores (load 4.22 -> 3.79):
SQLite 721 requests/s, p99 156.4 ms, end to end 522; PostgreSQL 333, p99 385.8 ms, end to end 185. The one server
process is the limit (its CPU seconds close to the wall seconds): the target is not met.

Fourth round (2026-11-30, a faster machine, idle): uvicorn's log lines written by threads of their own (each
access-log write from the event loop released the GIL to the in-process worker; pyinstrument: 3.1 s of the 4.8 s
of the answers' send under other helpers' load) and the SQLite store's pool at 40 connections (SQLAlchemy's 5 + 10
overflow opened and closed connections under 50 clients). The command of the first line above (01:03-01:05 UTC,
load 0.84 -> 2.66): SQLite 522 requests/s, p99 165.8 ms (worker apart 600, p99 152.5 ms), PostgreSQL 239 (apart
269); 217eb06 and this code back to back with ``--stores sqlite --worker in-process`` (01:05, load 2.66 / 2.12):
450 and 514 requests/s. README, "Where the targets stand", has the pairs of each change. Not met.

Fifth round (2026-11-30, idle machine; every pair back to back, each commit's ``src`` exported with ``git archive
COMMIT src`` and run with ``PYTHONPATH``; ``--stores sqlite --worker in-process``, N = 2,000, C = 50; the two
figures of a cell are two rounds, in the order A, B, C, A, B, C, 03:12-03:14 UTC, load 1.52 -> 2.36). A = 0e9167d
(one process), B = 4253cb1 (the request path made cheaper; ``--serve-workers 1,2``), C = e9cbe57 (B and the
collector settled, ``serve_workers.settle_garbage_collector``):

    set-up                requests/s     p99 ms          server CPU s   unknown status: req/s, p99 ms
    A, 1 process          601, 622       166.2, 157.9    3.81, 3.75     808, 731;  145.7, 158.3
    B, 1 process          686, 571       151.5, 176.9    3.33, 4.02     1,568, 1,328;  106.6, 120.0
    B, 2 serving          1,263, 1,011   101.7, 150.4    2.40, 2.90     2,668, 2,975;  95.2, 117.3
    C, 1 process          666, 686       119.7, 111.2    3.47, 3.35     1,927, 1,585;  44.9, 69.0
    C, 2 serving          1,455, 1,297   66.4, 87.3      2.26, 2.46     3,557, 2,807;  33.0, 41.3

The writers' turns across processes (``sql_schema._WriterTurns``: a ``flock`` of ``<database>-turns``), HEAD at
64d4bec against the same with ``_WriterTurns._file`` returning None (no turn across processes; ``sed -i 's/ if
self._path is None or fcntl is None:/ if True:/'`` on the exported ``sql_schema.py``), ``--serve-workers 2``,
03:16-03:17 UTC, load 0.34 -> 1.24: without 659, 726 requests/s, p99 1,238.3, 255.8 ms, max 1,252.3, 1,381.9 ms
(SQLite's busy wait); with 1,490, 1,143 requests/s, p99 68.8, 79.8 ms, max 85.7, 96.8 ms.

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
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

import read_lock
from read_lock import HANDOVER, TRANSFER, body, init_and_load

PAIRS = 50
T = TypeVar("T")
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
def serving(url: str, work: Path, n: int, profile: Path | None, name: str, apart: bool,
            processes: int = 1) -> Iterator[tuple[str, psutil.Process, psutil.Process | None]]:
    """``handover serve`` (``processes`` serving processes: ``api.workers``) on a fresh store of ``n`` assets: its
    URL, its process and, with ``apart``, the process of ``handover queue-worker`` beside it (``serve
    --no-worker`` through its setting); else None."""
    env = {**os.environ, "HANDOVER_STORE": url, "HANDOVER_AUTH_MODE": "none", "HANDOVER_KAFKA_BROKER_SERVERS": "",
           "HANDOVER_QUEUE_WORKER_IN_PROCESS": "false" if apart else "true", "HANDOVER_API_WORKERS": str(processes)}
    init_and_load(env, work, fixture(n))
    launcher = [HANDOVER]
    if profile is not None:
        launcher = [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--outfile",
                    str(profile / f"serve-{name}.txt"), "-m", "handover.entrypoints.cli"]
    log = work / f"serve-{name}.log"
    with read_lock.serving(env, log, launcher) as (base, server):
        # /health answers as soon as one serving process does; the clients' kept-alive connections are opened
        # once, so they would all go to the processes started by then: wait for every one
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("Application startup complete") < processes:
            if time.monotonic() > deadline:
                raise SystemExit(f"not all {processes} serving processes started within 60 s; see {log}")
            time.sleep(0.1)
        if not apart:
            yield base, psutil.Process(server.pid), None
            return
        with (work / f"worker-{name}.log").open("w") as out:
            worker = subprocess.Popen([HANDOVER, "queue-worker", "--poll", "0.05"], env=env, stdout=out, stderr=out)
            try:
                yield base, psutil.Process(server.pid), psutil.Process(worker.pid)
            finally:
                worker.terminate()
                worker.wait(60)


class Connection:
    """One kept-alive HTTP/1.1 connection, as lean as a client gets (httpx spent more CPU per request than the
    server): sends a request already encoded, reads the status line, the headers and a ``Content-Length`` body."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> int:
        """The answer's status code; raises ``ConnectionError`` if the server closed the connection."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, StopIteration) as exc:
            writer.close()
            self.streams = None
            raise ConnectionError(f"{type(exc).__name__} {exc}") from exc
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


def post(host: str, i: int, content: bytes) -> bytes:
    return (f"POST {TRANSFER} HTTP/1.1\r\nHost: {host}\r\nX-Request-ID: r-{i}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n").encode() + content


async def send_all(base: str, todo: list[tuple[int, bytes]], clients: int,
                   expected: int) -> tuple[list[float], int, int, float]:
    """(latencies in seconds, answers other than ``expected``, connection errors retried, seconds for all) of the
    requests ``todo`` (request number, encoded request) from ``clients`` clients, a kept-alive connection each."""
    latencies: list[float] = []
    errors = retried = 0
    queue = iter(todo)
    host, port = base.removeprefix("http://").split(":")

    async def client() -> None:
        nonlocal errors, retried
        connection = Connection(host, int(port))
        for i, request in queue:
            started = time.perf_counter()
            status = 0
            for attempt in range(2):  # a kept-alive connection the server closed meanwhile: once more
                try:
                    answer = await connection.send(request)
                except ConnectionError as exc:
                    print(f"request r-{i}: {exc}", file=sys.stderr)
                    retried += 1
                    continue
                # 409 on the second attempt: the first was accepted (the request id is taken)
                status = 200 if attempt == 1 and answer == 409 else answer
                break
            latencies.append(time.perf_counter() - started)
            if status != expected:
                errors += 1
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, retried, time.perf_counter() - started


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (it is with ``uvicorn[standard]``)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def client_process(job: tuple[str, str, int, int, int, int, int]) -> tuple[list[float], int, int, float, float]:
    """Run in a client process: (latencies, not accepted, retried, wall seconds, CPU seconds of this process) of
    its share of the requests (kind "transfer" or "unknown"; share ``k`` of ``of``: requests first+k, first+k+of,
    ...)."""
    kind, base, first, count, clients, k, of = job
    host = base.removeprefix("http://")
    if kind == "transfer":
        todo = [(i, post(host, i, json.dumps(request_body(i)).encode())) for i in range(first + k, first + count, of)]
    else:
        unknown = f"GET {TRANSFER}/no-such-request HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        todo = [(i, unknown) for i in range(k, count, of)]
    cpu = time.process_time()
    latencies, errors, retried, seconds = run(send_all(base, todo, clients, 200 if kind == "transfer" else 404))
    return latencies, errors, retried, seconds, time.process_time() - cpu


def cpu(process: psutil.Process | None) -> float:
    """CPU seconds of ``process`` and of its child processes (``serve --workers N``'s serving processes)."""
    if process is None:
        return 0.0
    return sum(sum(p.cpu_times()[:2]) for p in (process, *process.children(recursive=True)))


def run_clients(pool: ProcessPoolExecutor, processes: int, kind: str, base: str, first: int, count: int, clients: int,
                server: psutil.Process, worker: psutil.Process | None = None) -> dict[str, Any]:
    """``count`` requests from ``clients`` clients spread over the pool's processes (not this one, not the
    server's): latencies, errors, wall seconds for all, and the CPU seconds the server, the worker process (if
    any) and the clients used."""
    jobs = [(kind, base, first, count, clients // processes + (k < clients % processes), k, processes)
            for k in range(processes)]
    server_cpu, worker_cpu = cpu(server), cpu(worker)
    parts = list(pool.map(client_process, jobs))
    return {"latencies": [x for part in parts for x in part[0]], "errors": sum(p[1] for p in parts),
            "retried": sum(p[2] for p in parts), "seconds": max(p[3] for p in parts),
            "client_cpu": sum(p[4] for p in parts), "server_cpu": cpu(server) - server_cpu,
            "worker_cpu": cpu(worker) - worker_cpu}


def waiting(url: str) -> Callable[[], int]:
    """The number of events of the store's queue still pending or in hand (read from this process)."""
    from handover.bootstrap import api_parts, bootstrap

    backlog = api_parts(bootstrap(url)).backlog
    assert backlog is not None
    return lambda: sum(n for status, n in backlog.counts().items() if status in ("pending", "processing"))


def drained(base: str, url: str, first: int, count: int, timeout: float) -> tuple[float, dict[str, int]]:
    """(seconds until the queue had no event pending or in hand, whichever process works it, the outcomes of the
    events of requests ``first`` .. ``first + count - 1`` by their status, read afterwards)."""
    started = time.monotonic()
    left = waiting(url)
    with httpx.Client(base_url=base, timeout=60) as http:
        while (n := left()) > 0:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the worker left {n} events unprocessed after {timeout} s")
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


def measure(url: str, name: str, args: argparse.Namespace, work: Path, apart: bool, processes: int) -> dict[str, Any]:
    n, clients = args.requests, args.clients
    with (serving(url, work, clients + n, args.profile, name.replace(" ", "-").replace(",", ""), apart,
                  processes) as (base, server, worker),
          ProcessPoolExecutor(args.client_processes) as pool):
        run_clients(pool, args.client_processes, "transfer", base, 0, clients, clients, server)  # warm-up, not counted
        drained(base, url, 0, 0, args.timeout)
        writes = run_clients(pool, args.client_processes, "transfer", base, clients, n, clients, server, worker)
        worker_cpu = cpu(worker)
        after, outcomes = drained(base, url, clients, n, args.timeout)
        worker_cpu = writes["worker_cpu"] + cpu(worker) - worker_cpu
        reads = run_clients(pool, args.client_processes, "unknown", base, 0, n, clients, server)
    latencies = writes["latencies"]
    return {"name": name, "rate": n / writes["seconds"], "rate_all": n / (writes["seconds"] + after),
            "seconds": writes["seconds"], "errors": writes["errors"],
            "retried": writes["retried"], "after": after, "outcomes": outcomes,
            "server_cpu": writes["server_cpu"], "client_cpu": writes["client_cpu"], "worker_cpu": worker_cpu,
            **{f"p{p}": percentile(latencies, p) * 1000 for p in (50, 95, 99, 100)},
            "read_rate": n / reads["seconds"], "read_p50": percentile(reads["latencies"], 50) * 1000,
            "read_p99": percentile(reads["latencies"], 99) * 1000,
            "read_server_cpu": reads["server_cpu"], "read_client_cpu": reads["client_cpu"]}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests counted (default 2,000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--stores", default="sqlite,postgresql", help="sqlite, postgresql or both (the default)")
    parser.add_argument("--worker", default="in-process,apart",
                        help="in-process (serve's own worker), apart (serve --no-worker + handover queue-worker) or "
                             "both, side by side (the default)")
    parser.add_argument("--serve-workers", default="1,2",
                        help="serving processes of handover serve (api.workers), one set-up each: 1, 2 or both "
                             "(the default), side by side")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the clients run in, apart from the server and this one (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the worker may take to catch up")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a directory: run the servers under pyinstrument, a text report per store")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs); {args.requests:,} requests from "
          f"{args.clients} clients in {args.client_processes} process(es), one asset each, after {args.clients} "
          "not counted")
    results = []
    with tempfile.TemporaryDirectory(prefix="handover-api-bench-") as tmp:
        for store in args.stores.split(","):
            for processes in (int(k) for k in args.serve_workers.split(",")):
                for setup in args.worker.split(","):
                    if setup not in ("in-process", "apart"):
                        raise SystemExit(f"unknown worker set-up {setup!r}")
                    apart = setup == "apart"
                    name = f"{store}, worker {setup}" + (f", {processes} serving" if processes > 1 else "")
                    work = Path(tmp) / f"{store}-{setup}-{processes}"
                    work.mkdir()
                    if store == "sqlite":
                        results.append(measure(f"sqlite:///{work / 'handover.db'}", name, args, work, apart,
                                               processes))
                    elif store == "postgresql":
                        with postgres_schema() as url:
                            results.append(measure(url, name, args, work, apart, processes))
                    else:
                        raise SystemExit(f"unknown store {store!r}")
    rows = [
        ("requests/s", lambda r: f"{r['rate']:,.0f}"),
        ("seconds", lambda r: f"{r['seconds']:.2f}"),
        ("p50 ms", lambda r: f"{r['p50']:.1f}"),
        ("p95 ms", lambda r: f"{r['p95']:.1f}"),
        ("p99 ms", lambda r: f"{r['p99']:.1f}"),
        ("max ms", lambda r: f"{r['p100']:.1f}"),
        ("server CPU s", lambda r: f"{r['server_cpu']:.2f}"),
        ("client CPU s", lambda r: f"{r['client_cpu']:.2f}"),
        ("worker process CPU s", lambda r: f"{r['worker_cpu']:.2f}" if "apart" in r["name"] else "-"),
        ("requests not accepted", lambda r: str(r["errors"])),
        ("connection errors", lambda r: f"{r['retried']} (retried)"),
        ("worker done after (s)", lambda r: f"{r['after']:.2f}"),
        ("end to end: requests/s", lambda r: f"{r['rate_all']:,.0f}"),
        ("event outcomes", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))),
        ("unknown status: req/s", lambda r: f"{r['read_rate']:,.0f}"),
        ("unknown status: p50 ms", lambda r: f"{r['read_p50']:.1f}"),
        ("unknown status: p99 ms", lambda r: f"{r['read_p99']:.1f}"),
        ("unknown: server CPU s", lambda r: f"{r['read_server_cpu']:.2f}"),
        ("unknown: client CPU s", lambda r: f"{r['read_client_cpu']:.2f}"),
    ]
    print(f"\n{'':24}" + "".join(f"{r['name']:>40}" for r in results))
    for label, cell in rows:
        print(f"{label:24}" + "".join(f"{cell(r):>40}" for r in results))
    for i, a in enumerate(results):  # ratios of the set-ups of one store, and of the stores in one set-up
        for b in results[i + 1:]:
            store_a, setup_a = a["name"].split(", ", 1)
            store_b, setup_b = b["name"].split(", ", 1)
            if store_a == store_b or setup_a == setup_b:
                print(f"{b['name']} / {a['name']}: requests/s {b['rate'] / a['rate']:.2f}, "
                      f"p99 {b['p99'] / a['p99']:.2f}")
    for r in results:
        if r["name"].startswith("sqlite"):
            met = "met" if r["p99"] < 100 and r["rate"] >= 1000 else "NOT met"
            print(f"target on SQLite (p99 < 100 ms and >= 1,000 requests/s), {r['name']}: {met}")
    print(f"load average at end: {load_average()}")
    if any(r["errors"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
