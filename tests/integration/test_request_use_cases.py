"""The request use cases on the SQL stores (SQLite, PostgreSQL), with the embedded queue and its worker; the
failed events are the queue's."""

from __future__ import annotations

import pytest

from handover.service.requests import Invalid
from tests.e2e.api_support import wired
from tests.e2e.console_support import delete_meera
from tests.request_use_cases import exercise


def test_the_request_use_cases(store_url: str) -> None:
    app, parts = wired(store_url)
    assert parts.worker is not None
    service = parts.service(app)
    exercise(service, parts.worker.drain, lambda: delete_meera(app.store))
    assert service.failed_events(None) == []
    assert service.redrive(None, "LP.nope") is False
    with pytest.raises(Invalid):
        service.redrive(None, "LP.\x00")
