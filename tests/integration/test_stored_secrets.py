"""Secrets as operators store them (docs/contract.md#secrets-and-personal-data): SecureStrings written with
`--value file://key.txt` end in the file's newline. Real SSM (the moto server), real HTTP to the IMSHOP sandbox,
the real IMSHOP client and the history webhook's real key reader."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Sequence

import pytest

from imshop_push.domain.history import HistoryEntry
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Disposition
from imshop_push.entrypoints.config import Settings
from imshop_push.entrypoints.history_api import HistoryApi
from imshop_push.entrypoints.history_handler import parameter_key
from imshop_push.entrypoints.runtime import Runtime
from imshop_push_local.aws_clients import DEFAULT_REGION, emulator_env, make_client
from imshop_push_local.aws_emulator import MotoServer
from imshop_push_local.sandbox import ImshopSandbox

KEY = "imshop-sandbox-key-7d793037a0760186"
REQUEST = json.dumps({"userIds": ["79161234567"], "message": {"title": "Заказ отправлен", "summary": "Уже в пути"}})


@pytest.fixture
def ssm(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> object:
    """Powertools Parameters reaches the moto server through the standard variables, as in Lambda."""
    for name, value in emulator_env(moto_server.endpoint_url, DEFAULT_REGION).items():
        monkeypatch.setenv(name, value)
    return make_client("ssm", moto_server.endpoint_url)


@pytest.fixture
def sandbox() -> Iterator[ImshopSandbox]:
    sandbox = ImshopSandbox(api_key=KEY, rate_limit_requests=1000).start()
    yield sandbox
    sandbox.stop()


def store(ssm: object, value: str) -> str:
    name = f"/imshop-push-test/{uuid.uuid4().hex}"
    ssm.put_parameter(Name=name, Value=value, Type="SecureString")  # type: ignore[attr-defined]
    return name


def runtime_reading(url_parameter: str, key_parameter: str) -> Runtime:
    settings = Settings.from_env({"IMSHOP_API_URL_PARAMETER": url_parameter, "IMSHOP_API_KEY_PARAMETER": key_parameter})
    return Runtime(settings, metric=lambda _name, _value: None)


def test_a_url_and_key_stored_with_a_final_newline_reach_imshop_without_it(ssm: object, sandbox: ImshopSandbox) -> None:
    runtime = runtime_reading(store(ssm, sandbox.url + "\n"), store(ssm, KEY + "\r\n"))

    results = runtime.handle([InboundMessage("m1", REQUEST)], remaining_seconds=30.0)

    assert results["m1"].disposition is Disposition.DELIVERED, results["m1"].reason
    [call] = sandbox.calls
    assert (call.status, call.authorization) == (200, f"Bearer {KEY}")


def test_a_stored_key_no_header_can_carry_is_a_configuration_error_that_never_shows_it(
    ssm: object, sandbox: ImshopSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    bad_key = "imshop-key-with\na-line-break-1f0e3d"
    runtime = runtime_reading(store(ssm, sandbox.url), store(ssm, bad_key))

    with caplog.at_level(logging.DEBUG):
        results = runtime.handle([InboundMessage("m1", REQUEST)], remaining_seconds=30.0)

    assert results["m1"].disposition is Disposition.RETRY
    assert sandbox.calls == []
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert "IMSHOP_API_KEY_PARAMETER" in text
    for part in bad_key.split("\n"):
        assert part not in text


class NoHistory:
    def newest(self, user_id: str, *, limit: int, not_before_ms: int) -> list[HistoryEntry]:
        return []

    def mark_read(self, user_id: str, ids: Sequence[str], *, read_on_ms: int) -> int:
        return 0


def test_the_history_webhook_accepts_its_key_stored_with_a_final_newline(ssm: object) -> None:
    webhook = HistoryApi(
        NoHistory(),
        key=parameter_key(store(ssm, "history-key-0c1d2e\n")),
        max_items=10,
        retention_days=90,
        metric=lambda _name, _value: None,
    )
    event = {
        "rawPath": "/history",
        "headers": {"authorization": "Bearer history-key-0c1d2e"},
        "requestContext": {"http": {"method": "POST"}},
        "body": json.dumps({"userId": "79161234567"}),
    }

    assert webhook.handle(event)["statusCode"] == 200
