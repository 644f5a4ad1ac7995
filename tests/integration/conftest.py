"""The Kafka-protocol broker for the worker tests: one ``tansu`` per test session (each test uses topics and a
consumer group of its own)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.tansu import Tansu, tansu_problem


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    problem = tansu_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log") as broker:
        yield broker
