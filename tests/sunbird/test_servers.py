"""Where the test servers differ from what a Sunbird deployment runs, shown with the server's own answer (so a
change of server or version that lifts a limit is noticed)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import UPSTREAM
from tests.sunbird_deployment import COURSE_BATCH_COLUMNS, Deployment


def test_cassandra_2_1_0_has_no_nested_collections(deployment: Deployment) -> None:
    """lms-service's ``cert_templates map<text, frozen<map<text, text>>>`` needs Cassandra 2.1.3 or later; the
    suite's 2.1.0 refuses it, so the test table holds each template as JSON text."""
    from cassandra.protocol import SyntaxException

    session = deployment.cql()
    assert session.execute("SELECT release_version FROM system.local").one().release_version == "2.1.0"
    with pytest.raises(SyntaxException, match="frozen<> is only currently only allowed on User-Defined and tuple"):
        session.execute(
            f"CREATE TABLE {deployment.lms_keyspace}.nested (k text PRIMARY KEY, "
            f"cert_templates {COURSE_BATCH_COLUMNS['cert_templates']})"
        )
    assert deployment.columns()["cert_templates"] == "map<text, text>"


def test_lms_index_settings_need_the_7x_changes(deployment: Deployment) -> None:
    """The LMS ``course-batch`` settings were written for Elasticsearch 6.x: 7+ limits an ngram filter's
    ``max_gram - min_gram`` to ``index.max_ngram_diff`` (default 1; the LMS filter spans 1-20), and 7.0 removed the
    ``standard`` token filter. The emulator (Elasticsearch 8 API) refuses both, as 7+ does."""
    settings = json.loads((UPSTREAM / "lms" / "course-batch-settings.json").read_text())
    response = httpx.put(f"{deployment.es_url}/as-in-6x-{deployment.tag}", json=settings, timeout=30)
    assert response.status_code == 400, response.text
    assert "index.max_ngram_diff" in response.text
    settings["settings"]["index"]["max_ngram_diff"] = "19"
    response = httpx.put(f"{deployment.es_url}/as-in-6x-{deployment.tag}", json=settings, timeout=30)
    assert response.status_code == 400, response.text
    assert "failed to find filter under name [standard]" in response.text
