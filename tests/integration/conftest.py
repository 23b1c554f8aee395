"""One moto server for the whole integration run (one per pytest-xdist process): each test provisions its own
uniquely named resources, so tests never need a server of their own.

`make test` runs the tests side by side (pytest-xdist). A test whose stack keeps the CPU busy (hundreds of
emulator requests from several workers) and that asserts timing under load (no invocation past its timeout, calls
per window, slots waited) is marked ``@pytest.mark.cpu_heavy``: `make test` runs those afterwards, alone, so their
verdicts do not depend on what runs beside them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from imshop_push_local.aws_emulator import MotoServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(autouse=True, scope="session")
def _quiet_emulator_access_log() -> None:
    """moto server logs every request through werkzeug at INFO: noise that hides a failing test's story."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
