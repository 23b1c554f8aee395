"""One moto server for the whole integration run: each test provisions its own uniquely named resources."""

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
