"""Schemathesis against the app's own OpenAPI document: no generated request, valid or not, gets a 500 (auth
off; embedded store loaded with the shared fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from handover.entrypoints.api import create_app
from tests.e2e.api_support import wired


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error(tmp_path: Path, mode: GenerationMode) -> None:
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app, parts))
    seen: set[int] = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=schema.as_strategy(mode))
    def check(case: Any) -> None:
        response = case.call()
        seen.add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"

    check()
    assert seen & {200, 400, 404}, seen  # the generated requests did reach the handlers
