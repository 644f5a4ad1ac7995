"""Run an ArcadeDB server with its Bolt plugin until SIGTERM: ``python -m tests.servers.arcadedb_main DIR HTTP BOLT``.

A process of its own because ArcadeDB runs inside a JVM started through JPype: the test process stays free of it,
and the server is stopped by PID. Prints ``ready`` when the database ``handover`` exists and Bolt listens.
"""

from __future__ import annotations

import signal
import sys
import threading

PASSWORD = "handover-test"  # root's password (ArcadeDB wants at least 8 characters)
DATABASE = "handover"


def main() -> None:
    directory, http_port, bolt_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from arcadedb_embedded.server import ArcadeDBServer

    server = ArcadeDBServer(
        root_path=directory,
        root_password=PASSWORD,
        config={
            "host": "127.0.0.1",
            "http_port": http_port,
            "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "bolt_port": bolt_port,
            "bolt_defaultDatabase": DATABASE,
        },
        jvm_kwargs={"heap_size": "512m"},
    )
    server.start()
    server.create_database(DATABASE)
    stop = threading.Event()
    # The JVM installs its own handlers; take SIGTERM/SIGINT back for a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
