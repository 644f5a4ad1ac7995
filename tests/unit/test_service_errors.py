"""A use case's refusal (``service.requests.ServiceError``) becomes the HTTP answer the API gave before the use
cases moved to ``service/``: the status by kind, the refusal's own Sunbird code where it has one."""

from __future__ import annotations

import pytest

from handover.domain.transfer_request import CANNOT_TRANSFER_OWNERSHIP, RESTRICTED
from handover.entrypoints.api_common import (
    ERR_DUPLICATE,
    ERR_FORBIDDEN,
    ERR_INVALID,
    ERR_NOT_FOUND,
    ERR_SERVER,
    api_error,
)
from handover.service.requests import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    NotSupported,
    ServiceError,
    Unavailable,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Invalid("bad"), 400, ERR_INVALID),
        (Forbidden("no"), 403, ERR_FORBIDDEN),
        (NotFound("none"), 404, ERR_NOT_FOUND),
        (Conflict("again"), 409, ERR_DUPLICATE),
        (NotSupported("cannot"), 501, ERR_SERVER),
        (Unavailable("down"), 503, ERR_SERVER),
        (ServiceError("other"), 500, ERR_SERVER),
    ],
)
def test_each_kind_has_its_status(error: ServiceError, status: int, code: str) -> None:
    answer = api_error(error)
    assert (answer.status, answer.err, answer.errmsg) == (status, code, error.message)


def test_a_refusal_with_an_upstream_code_keeps_it() -> None:
    answer = api_error(Invalid(RESTRICTED, CANNOT_TRANSFER_OWNERSHIP))
    assert (answer.status, answer.err, answer.errmsg) == (400, CANNOT_TRANSFER_OWNERSHIP, RESTRICTED)
