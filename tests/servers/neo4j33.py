"""Stand-ins for a Neo4j 3.3 server, written for handover's tests. They are ours, not Neo4j: no Neo4j 3.3 can be
installed from the registries this machine reaches.

- ``Neo4j33Bolt``: a TCP listener that answers the Bolt handshake as Neo4j 3.3 does. 3.3 speaks Bolt v1 only: it
  answers ``00 00 00 01`` when 1 is among the four proposals, else ``00 00 00 00`` and closes the connection.
  It speaks no Bolt message after the handshake.
- ``Neo4j33Http``: an HTTP server answering as the transactional Cypher endpoint of Neo4j 3.3 does (the formats of
  the Neo4j 3.3 server docs, neo4j/neo4j-documentation branch 3.3: ``TransactionDocIT``, ``AuthenticationDocIT``,
  ``DiscoveryServiceDocIT``): ``GET /`` the discovery document; ``POST /db/data/transaction/commit`` with HTTP
  Basic authentication (401 ``Neo.ClientError.Security.Unauthorized`` otherwise). The statements of one request
  run in one transaction **on ArcadeDB through Bolt** (the suite's ``bolt_server``), so they run on a real Cypher
  engine; an error becomes an entry of ``errors`` (code and message as the engine gave them) and rolls the
  transaction back, with HTTP 200, as Neo4j does. ``faults`` makes the next requests fail on purpose.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.servers.process import http_server

BOLT_MAGIC = bytes.fromhex("6060B017")
COMMIT_PATH = "/db/data/transaction/commit"


@dataclass
class Neo4j33Bolt:
    """Bolt handshake as Neo4j 3.3 answers it. ``proposals`` records what each client offered."""

    proposals: list[tuple[int, ...]] = field(default_factory=list)
    port: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> Neo4j33Bolt:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._sock is not None
        self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while len(data) < 20:
                    chunk = conn.recv(20 - len(data))
                    if not chunk:
                        return
                    data += chunk
                if data[:4] != BOLT_MAGIC:
                    return
                offered = struct.unpack(">4I", data[4:])
                self.proposals.append(offered)
                if 1 not in offered:
                    conn.sendall(b"\x00\x00\x00\x00")
                    return
                conn.sendall(b"\x00\x00\x00\x01")
                while conn.recv(4096):  # Bolt v1 messages would follow; this stand-in answers none
                    pass
            except OSError:
                return


def _plain(value: Any) -> Any:
    """A value as the HTTP API writes it in a row (maps, lists and scalars; a node as its properties)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "items"):  # a driver Node / Relationship
        return {k: _plain(v) for k, v in value.items()}
    return str(value)


@dataclass
class Neo4j33Http:
    """``faults``: a list consumed one per commit request: an int is an HTTP status answered instead (e.g. 503),
    a string a Neo4j error code answered in ``errors`` (e.g. ``Neo.TransientError.Transaction.DeadlockDetected``).
    ``requests`` records (method, path, JSON body or None)."""

    bolt_uri: str
    user: str
    password: str
    faults: list[int | str] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    _driver: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def driver(self) -> Any:
        if self._driver is None:
            import neo4j

            self._driver = neo4j.GraphDatabase.driver(self.bolt_uri, auth=(self.user, self.password))
        return self._driver

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()

    def authorized(self, header: str | None) -> tuple[int, dict[str, Any]] | None:
        """None when the credentials are right, else the status and body Neo4j 3.3 answers."""
        if not header:
            message = "No authentication header supplied."
        else:
            try:
                scheme, encoded = header.split(" ", 1)
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return 400, _error("Neo.ClientError.Request.InvalidFormat", "Invalid authentication header.")
            if scheme == "Basic" and (user, password) == (self.user, self.password):
                return None
            message = "Invalid username or password."
        return 401, _error("Neo.ClientError.Security.Unauthorized", message)

    def execute(self, body: Any) -> dict[str, Any]:
        """The statements of one request in one transaction on the Bolt server; committed when all succeed."""
        from neo4j.exceptions import Neo4jError

        statements = body.get("statements") if isinstance(body, Mapping) else None
        if not isinstance(statements, list):
            return _error("Neo.ClientError.Request.InvalidFormat", "Unable to deserialize request: no statements")
        results: list[dict[str, Any]] = []
        with self.driver().session() as session:
            tx = session.begin_transaction()
            try:
                for statement in statements:
                    text = statement.get("statement")
                    if "\n" in text:  # refused by 3.x (developer manual 3.x, HTTP API)
                        raise _Refused("Neo.ClientError.Request.InvalidFormat", "Literal line break in a statement")
                    result = tx.run(text, statement.get("parameters") or {})
                    columns = list(result.keys())
                    data = [{"row": [_plain(v) for v in record.values()]} for record in result]
                    results.append({"columns": columns, "data": data})
                tx.commit()
            except Neo4jError as exc:
                tx.rollback()
                return {"results": results, "errors": [{"code": exc.code, "message": exc.message}]}
            except _Refused as exc:
                tx.rollback()
                return {"results": results, "errors": [{"code": exc.code, "message": exc.message}]}
        return {"results": results, "errors": []}

    def next_fault(self) -> int | str | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else None


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


def _handler(fake: Neo4j33Http) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, None))
            if self.path != "/":
                self._send(404, _error("Neo.ClientError.Request.Invalid", f"no resource {self.path}"))
                return
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            self._send(200, {"management": f"{base}/db/manage/", "data": f"{base}/db/data/"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            fake.requests.append(("POST", self.path, body))
            denied = fake.authorized(self.headers.get("Authorization"))
            if denied is not None:
                self._send(denied[0], denied[1], {"WWW-Authenticate": 'Basic realm="Neo4j"'})
                return
            if self.path != COMMIT_PATH:
                self._send(404, _error("Neo.ClientError.Request.Invalid", f"no resource {self.path}"))
                return
            fault = fake.next_fault()
            if isinstance(fault, int):
                self._send(fault, {"errors": [], "message": "fault injected by the test"})
                return
            if isinstance(fault, str):
                self._send(200, {"results": [], "errors": [{"code": fault, "message": "fault injected by the test"}]})
                return
            self._send(200, fake.execute(body))

    return Handler


@contextmanager
def serve(fake: Neo4j33Http) -> Iterator[str]:
    """Serve the fake on a free loopback port; yields its base URL."""
    try:
        with http_server(_handler(fake)) as base:
            yield base
    finally:
        fake.close()
