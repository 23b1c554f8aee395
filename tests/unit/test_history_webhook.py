"""IMSHOP's notification-history webhook (docs/contract.md#in-app-history), a payload 2.0 event at a time: the
key first, then the route and method, then the input; the answer in the vendor's shape, newest first."""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections import Counter
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from fakes import FakeHistory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_handler import FakeContext

from imshop_push.domain.bearer_key import ConfigError
from imshop_push.domain.history import DAY_SECONDS, HistoryEntry
from imshop_push.domain.observability import METRIC_NAMES
from imshop_push.entrypoints import history_handler
from imshop_push.entrypoints.config import HistorySettings
from imshop_push.entrypoints.history_api import HistoryApi, KeyUnavailableError

KEY = "s3cr3t-history-key"
NOW = 1_800_000_000.0
NOW_MS = int(NOW * 1000)
USER = "79991234567"


class Webhook:
    def __init__(self, *, max_items: int = 100, retention_days: int = 90) -> None:
        self.store = FakeHistory()
        self.metrics: Counter[str] = Counter()
        self.key = KEY
        self.api = HistoryApi(
            self.store,
            key=self._key,
            max_items=max_items,
            retention_days=retention_days,
            metric=self.metric,
            clock=lambda: NOW,
        )

    def _key(self) -> str:
        if not self.key:
            raise KeyUnavailableError("cannot read HISTORY_API_KEY_PARAMETER: GetParameterError")
        return self.key

    def metric(self, name: str, value: int) -> None:
        assert name in METRIC_NAMES
        self.metrics[name] += value

    def add(self, user: str, n: int, **fields: Any) -> HistoryEntry:
        entry = HistoryEntry(user, f"id-{n}", f"title {n}", NOW_MS - n * 1000, NOW_MS - n * 1000, **fields)
        self.store.entries[(user, entry.id)] = entry
        return entry

    def call(self, path: str = "/history", body: Any = None, **kwargs: Any) -> dict[str, Any]:
        return self.api.handle(event(path, {"userId": USER} if body is None else body, **kwargs))


def event(
    path: str,
    body: Any,
    *,
    method: str = "POST",
    authorization: str | None = f"Bearer {KEY}",
    header_name: str = "authorization",
    raw: str | None = None,
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """What a Lambda function URL hands the function (payload format 2.0)."""
    headers = {"content-type": "application/json", "host": "abc.lambda-url.eu-central-1.on.aws"}
    if authorization is not None:
        headers[header_name] = authorization
    text = raw if raw is not None else json.dumps(body)
    if base64_encoded:
        text = base64.b64encode(text.encode()).decode()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"}},
        "body": text,
        "isBase64Encoded": base64_encoded,
    }


def payload(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


# --- reading ----------------------------------------------------------------------------------------------


def test_history_is_newest_first_in_the_vendors_shape_with_empty_fields_omitted() -> None:
    w = Webhook()
    w.add(USER, 5, text="older", promocode="JAH12DASD")
    w.add(USER, 1, text="newer", deep_link="shop://x", url="https://shop.example/p")
    w.add("someone-else", 0)
    answer = w.call()
    assert answer["statusCode"] == 200
    assert answer["headers"]["content-type"] == "application/json"
    history = payload(answer)["history"]
    assert history == [
        {
            "id": "id-1",
            "title": "title 1",
            "createdOn": NOW_MS - 1000,
            "updatedOn": NOW_MS - 1000,
            "text": "newer",
            "url": "https://shop.example/p",
            "deepLink": "shop://x",
        },
        {
            "id": "id-5",
            "title": "title 5",
            "createdOn": NOW_MS - 5000,
            "updatedOn": NOW_MS - 5000,
            "text": "older",
            "promocode": "JAH12DASD",
        },
    ]
    assert all(isinstance(e["id"], str) and None not in e.values() for e in history)
    assert w.metrics["HistoryReads"] == 1


def test_at_most_max_items_entries_and_never_one_past_retention() -> None:
    w = Webhook(max_items=3, retention_days=1)
    for n in range(10):
        w.add(USER, n)
    w.add(USER, DAY_SECONDS + 1)  # not updated for a day and a second: gone, even before the TTL removes it
    history = payload(w.call())["history"]
    assert [e["id"] for e in history] == ["id-0", "id-1", "id-2"]
    ((user, limit, not_before),) = w.store.queries
    assert (user, limit, not_before) == (USER, 3, NOW_MS - DAY_SECONDS * 1000)


def test_a_user_without_history_gets_an_empty_list() -> None:
    assert payload(Webhook().call())["history"] == []


def test_a_numeric_user_id_is_the_same_user() -> None:
    w = Webhook()
    w.add("12345", 1)
    assert len(payload(w.call(body={"userId": 12345}))["history"]) == 1


# --- read marks -------------------------------------------------------------------------------------------


def test_read_marks_set_read_on_only_and_ignore_unknown_ids() -> None:
    w = Webhook()
    w.add(USER, 1)
    older = w.add(USER, 2)
    w.add("someone-else", 3)
    answer = w.call("/history/read", {"userId": USER, "ids": ["id-2", "id-2", "nope", "id-3"]})
    assert (answer["statusCode"], payload(answer)) == (200, {})
    assert w.store.read_on == {(USER, "id-2"): NOW_MS}  # another user's id is not theirs to mark
    assert w.store.entries[(USER, "id-2")] == older  # updatedOn, and so the order, unchanged
    assert [e["id"] for e in payload(w.call())["history"]] == ["id-1", "id-2"]
    assert w.metrics["HistoryReadMarks"] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"userId": USER}, "ids: must be an array of notification ids"),
        ({"userId": USER, "ids": "id-1"}, "ids: must be an array of notification ids"),
        ({"userId": USER, "ids": [1]}, "ids: every id must be a string of 1 to 256 characters"),
        ({"userId": USER, "ids": [""]}, "ids: every id must be a string of 1 to 256 characters"),
        ({"userId": USER, "ids": ["x"] * 101}, "ids: at most 100 ids (HISTORY_MAX_ITEMS)"),
        ({"ids": []}, "userId: is a required property"),
    ],
)
def test_bad_read_marks_are_400_with_the_reason(body: Any, reason: str) -> None:
    answer = Webhook().call("/history/read", body)
    assert (answer["statusCode"], payload(answer)) == (400, {"message": reason})


# --- the key ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {KEY}",
        f"Token {KEY}",
        KEY,
        "Bearer wrong",
        f"Bearer {KEY}x",
        f"Bearer {KEY[:-1]}",
    ],
)
@pytest.mark.parametrize("path", ["/history", "/history/read", "/elsewhere"])
def test_without_the_key_every_request_is_401_and_nothing_else(authorization: str | None, path: str) -> None:
    w = Webhook()
    w.add(USER, 1)
    answer = w.call(path, {"userId": USER, "ids": ["id-1"]}, authorization=authorization)
    assert answer == {"statusCode": 401, "headers": {}, "body": ""}
    assert not w.store.queries
    assert not w.store.read_on
    assert w.metrics["HistoryUnauthorized"] == 1


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
@pytest.mark.parametrize("header_name", ["authorization", "Authorization"])
def test_the_scheme_and_the_header_name_are_case_insensitive(scheme: str, header_name: str) -> None:
    answer = Webhook().call(authorization=f"{scheme} {KEY}", header_name=header_name)
    assert answer["statusCode"] == 200


def test_the_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert Webhook().call(authorization="Bearer guess")["statusCode"] == 401
    assert compared == [(b"guess", KEY.encode())]


def test_an_unreadable_key_lets_nobody_in() -> None:
    w = Webhook()
    w.key = ""
    assert w.call() == {"statusCode": 503, "headers": {}, "body": ""}


# --- routes, methods, input -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/history/", "/History", "/history/read/x", "/read"])
def test_other_routes_are_404_without_data(path: str) -> None:
    assert Webhook().call(path) == {"statusCode": 404, "headers": {}, "body": ""}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_without_data(method: str) -> None:
    answer = Webhook().call(method=method)
    assert answer == {"statusCode": 405, "headers": {"allow": "POST"}, "body": ""}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "body: a JSON object is required"),
        ("{", "body: is not valid JSON"),
        ("[]", "body: must be a JSON object"),
        ('"12345"', "body: must be a JSON object"),
        ("{}", "userId: is a required property"),
        ('{"userId": null}', "userId: must be a string"),
        ('{"userId": true}', "userId: must be a string"),
        ('{"userId": ["1"]}', "userId: must be a string"),
        ('{"userId": ""}', "userId: must be 1 to 256 characters"),
        (json.dumps({"userId": "x" * 257}), "userId: must be 1 to 256 characters"),
        ("[" * 100_000, "body: is not valid JSON"),
    ],
)
def test_bad_input_is_400_with_the_reason(raw: str, reason: str) -> None:
    answer = Webhook().call(raw=raw)
    assert (answer["statusCode"], payload(answer)) == (400, {"message": reason})


def test_a_number_past_pythons_conversion_limit_is_400_not_5xx() -> None:
    """json.loads refuses an integer of more than 4,300 digits with a plain ValueError, not a JSONDecodeError."""
    for raw in ('{"userId": ' + "1" * 4301 + "}", '{"userId": "u", "ids": [' + "9" * 5000 + "]}", "7" * 4301):
        for path in ("/history", "/history/read"):
            answer = Webhook().call(path, raw=raw)
            assert (answer["statusCode"], payload(answer)) == (400, {"message": "body: is not valid JSON"})


def _json_ish() -> st.SearchStrategy[str]:
    """Text shaped like JSON and often not quite: numbers of any length (past the 4,300-digit conversion limit
    too), floats past the double range, escapes, the fields the webhook reads, nesting, and truncation."""
    lengths = st.one_of(st.integers(1, 30), st.integers(4290, 4310), st.integers(4311, 6000))
    digits = st.builds(lambda n, d: d * n, lengths, st.sampled_from("123456789"))
    scalar = st.one_of(
        st.sampled_from(["null", "true", "false", "1e999", "-0", "NaN", "Infinity", '"\\ud800"', '"\\u00"']),
        digits,
        st.builds("-{}.{}e{}".format, digits, digits, st.integers(-400, 400)),
        st.text(max_size=20).map(json.dumps),
        st.text(max_size=20),
    )
    key = st.one_of(st.sampled_from(['"userId"', '"ids"']), st.text(max_size=8).map(json.dumps))
    value = st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.lists(st.tuples(key, inner), max_size=4).map(
                lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"
            ),
        ),
        max_leaves=12,
    )
    return st.one_of(value, st.tuples(value, st.integers(min_value=0)).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        _json_ish().map(lambda text: (text, False)),
        st.binary(max_size=64).map(lambda raw: (base64.b64encode(raw).decode(), True)),
        _json_ish().map(lambda text: (base64.b64encode(text.encode("utf-8", "surrogatepass")).decode(), True)),
        st.text(max_size=64).map(lambda text: (text, True)),
    ),
    path=st.sampled_from(["/history", "/history/read"]),
)
def test_any_body_is_answered_200_or_400_never_an_error(body: tuple[str, bool], path: str) -> None:
    text, base64_encoded = body
    request = event(path, None, raw=text)
    request["isBase64Encoded"] = base64_encoded
    answer = Webhook().api.handle(request)
    assert answer["statusCode"] in (200, 400)
    if answer["statusCode"] == 400:
        assert payload(answer)["message"]


def test_a_base64_body_is_decoded_and_bad_base64_is_400() -> None:
    w = Webhook()
    w.add(USER, 1)
    assert len(payload(w.call(base64_encoded=True))["history"]) == 1
    broken = event("/history", None, raw="%%%")
    broken["isBase64Encoded"] = True
    assert payload(w.api.handle(broken)) == {"message": "body: is not valid base64"}


def test_an_unavailable_table_is_503_not_an_error_of_the_caller() -> None:
    w = Webhook()
    w.store.unavailable = True
    assert w.call()["statusCode"] == 503
    assert w.call("/history/read", {"userId": USER, "ids": ["a"]})["statusCode"] == 503


def test_logs_carry_masked_user_ids_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w = Webhook()
    w.add(USER, 1)
    w.call()
    w.call("/history/read", {"userId": USER, "ids": ["id-1"]})
    w.call(body={"userId": USER, "x": 1}, authorization="Bearer nope")
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "79*******67" in text
    assert USER not in text
    assert KEY not in text


# --- the Lambda entry point and its configuration -----------------------------------------------------------


# The fakes count metrics themselves: Powertools has none to flush, and says so.
QUIET_METRICS = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@QUIET_METRICS
def test_the_handler_answers_a_function_url_event() -> None:
    w = Webhook()
    w.add(USER, 1)
    handler = history_handler.make_handler(lambda: w.api)
    answer = handler(event("/history", {"userId": USER}), cast(LambdaContext, FakeContext()))
    assert answer["statusCode"] == 200
    assert [e["id"] for e in payload(answer)["history"]] == ["id-1"]


@QUIET_METRICS
def test_a_misconfigured_handler_answers_503_without_data() -> None:
    def broken() -> HistoryApi:
        raise ConfigError("HISTORY_TABLE_NAME must be set (the history table)")

    handler = history_handler.make_handler(broken)
    answer = handler(event("/history", {"userId": USER}), cast(LambdaContext, FakeContext()))
    assert answer == {"statusCode": 503, "headers": {}, "body": ""}


def test_settings_come_from_the_environment() -> None:
    settings = HistorySettings.from_env({"HISTORY_TABLE_NAME": "t", "HISTORY_API_KEY_PARAMETER": "/k"})
    assert (settings.table_name, settings.api_key, settings.api_key_parameter) == ("t", None, "/k")
    assert (settings.max_items, settings.retention_days) == (100, 90)
    with pytest.raises(ConfigError, match="HISTORY_API_KEY or HISTORY_API_KEY_PARAMETER"):
        HistorySettings.from_env({"HISTORY_TABLE_NAME": "t"})
    with pytest.raises(ConfigError, match="HISTORY_TABLE_NAME"):
        HistorySettings.from_env({"HISTORY_API_KEY": "k"})
    with pytest.raises(ConfigError, match="HISTORY_MAX_ITEMS must be at most 1000"):
        HistorySettings.from_env({"HISTORY_TABLE_NAME": "t", "HISTORY_API_KEY": "k", "HISTORY_MAX_ITEMS": "1001"})


# --- a stored key as operators store it (docs/contract.md#secrets-and-personal-data) --------------------------


def webhook_reading(stored: str) -> HistoryApi:
    """The webhook with its key read from a parameter that holds `stored` (as `read_secure_string` returns it)."""
    key = history_handler.parameter_key("/history/key", read=lambda _name: stored.strip())
    return HistoryApi(FakeHistory(), key=key, max_items=10, retention_days=90, metric=lambda _name, _value: None)


@pytest.mark.parametrize("stored", [f"{KEY}\n", f"{KEY}\r\n", f"  {KEY}\t"])
def test_a_key_parameter_stored_with_surrounding_whitespace_lets_its_key_in(stored: str) -> None:
    assert webhook_reading(stored).handle(event("/history", {"userId": USER}))["statusCode"] == 200


@pytest.mark.parametrize("inner", ["\n", "\x01", " ", "é"])
def test_a_stored_key_no_header_can_carry_is_503_and_logged_by_the_parameters_name_only(
    inner: str, caplog: pytest.LogCaptureFixture
) -> None:
    head, tail = "s3cr3t-hist", "ory-key-9d2a"
    with caplog.at_level(logging.DEBUG):
        answer = webhook_reading(head + inner + tail).handle(
            event("/history", {"userId": USER}, authorization=f"Bearer {head}{tail}")
        )

    assert answer == {"statusCode": 503, "headers": {}, "body": ""}
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "HISTORY_API_KEY_PARAMETER" in text
    assert head not in text
    assert tail not in text


@QUIET_METRICS
def test_a_key_variable_no_header_can_carry_is_a_logged_503_that_never_shows_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HISTORY_TABLE_NAME", "history")
    monkeypatch.setenv("HISTORY_API_KEY", "s3cr3t-hist\x1bory-key-9d2a")
    monkeypatch.setattr(history_handler, "_api", None)

    with caplog.at_level(logging.DEBUG):
        answer = history_handler.lambda_handler(event("/history", {"userId": USER}), cast(LambdaContext, FakeContext()))

    assert answer == {"statusCode": 503, "headers": {}, "body": ""}
    out = " ".join(json.dumps(r.__dict__, default=str) for r in caplog.records)  # the message and its extra fields
    assert "HISTORY_API_KEY" in out
    assert "s3cr3t-hist" not in out
    assert "ory-key-9d2a" not in out
