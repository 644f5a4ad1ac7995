"""``noida-db`` (PyPI): one binary that imitates several servers; here only its Elasticsearch 8 REST API (term /
terms queries, ``search_after``, ``_update``, ``_bulk``, refresh). An emulator, not Lucene Elasticsearch: where
it differs from Elasticsearch, a test shows it with the reason."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.servers.process import ServerProcess, free_port


def binary() -> Path:
    import noida_db

    return Path(noida_db.__file__).with_name("noida-db")


def problem() -> str | None:
    try:
        path = binary()
    except Exception as exc:
        return f"noida-db is not installed (dev extra): {exc}"
    if not path.is_file():
        return f"noida-db binary missing at {path}"
    path.chmod(0o755)
    return None


def noida_server(directory: Path) -> ServerProcess:
    """A not-yet-started emulator; ``.port`` is its Elasticsearch HTTP port."""
    port = free_port()
    argv = [str(binary()), "start", "--data-dir", str(directory / "data"), "--host", "127.0.0.1",
            "--only", "elasticsearch", "--elasticsearch-port", str(port)]

    def ready() -> bool:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200

    return ServerProcess("noida-db (Elasticsearch API)", argv, directory / "noida.log", ready, port=port)
