"""Driver errors become one error that names the store; anything else passes through unchanged."""

from __future__ import annotations

import pytest

from handover.adapters.sunbird_errors import StoreErrors, SunbirdStoreError


class DriverTimeout(Exception):
    pass


def drivers() -> tuple[type[BaseException], ...]:
    return (DriverTimeout,)


@pytest.mark.parametrize("error", [DriverTimeout("no answer"), ConnectionRefusedError("refused")])
def test_driver_and_os_errors_name_the_store(error: Exception) -> None:
    with pytest.raises(SunbirdStoreError, match=r"^neo4j: reading do_1: ") as caught, StoreErrors(
        "neo4j", "reading do_1", drivers
    ):
        raise error
    assert caught.value.store == "neo4j" and caught.value.__cause__ is error


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), StoreErrors("cassandra", "writing", drivers):
        raise KeyError("bug")
    original = SunbirdStoreError("userorg", "down")
    with pytest.raises(SunbirdStoreError) as caught, StoreErrors("cassandra", "writing", drivers):
        raise original
    assert caught.value is original
