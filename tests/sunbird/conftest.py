"""One Sunbird deployment per test on the session's servers (real Cassandra 2.1, ArcadeDB's Bolt, the noida-db
Elasticsearch emulator), with userorg answered by ``tests/integration/userorg_server.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from handover.domain.model import user_from_json
from tests.conftest import EXAMPLES
from tests.integration.userorg_server import FakeUserOrg, serve
from tests.servers.process import ServerProcess
from tests.sunbird_deployment import Deployment

FIXTURE = json.loads((EXAMPLES / "fixture.json").read_text())


@pytest.fixture
def userorg() -> FakeUserOrg:
    """The stand-in userorg, holding the example fixture's users; tests add their own."""
    fake = FakeUserOrg()
    fake.add(*(user_from_json(u) for u in FIXTURE["users"]))
    return fake


@pytest.fixture
def deployment(
    cassandra_server: ServerProcess,
    bolt_server: ServerProcess,
    elasticsearch_server: ServerProcess,
    userorg: FakeUserOrg,
) -> Iterator[Deployment]:
    """Empty Sunbird stores (LMS table, course-batch index, graph label) under names of this test's own."""
    with serve(userorg) as userorg_url:
        deployment = Deployment(
            cassandra_port=cassandra_server.port,
            es_url=f"http://127.0.0.1:{elasticsearch_server.port}",
            bolt_uri=f"bolt://127.0.0.1:{bolt_server.port}",
            userorg_url=userorg_url,
        )
        deployment.create()
        try:
            yield deployment
        finally:
            deployment.drop()
