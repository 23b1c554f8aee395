"""Configuration: defaults, errors that name the variable, and URL safety.

The contract: docs/contract.md#configuration and #secrets-and-personal-data.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imshop_push.domain.bearer_key import ConfigError, bearer_key
from imshop_push.entrypoints.config import HistorySettings, Settings, check_api_url

URL = "https://push.imshop.example/api/v1/notifications/7f3c9e0a-path-token"
BASE = {"IMSHOP_API_URL": URL}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def error_of(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_defaults() -> None:
    s = settings()

    assert s.rate_limit_requests == 10
    assert s.rate_limit_window_seconds == 60
    assert s.max_recipients_per_request == 1000
    assert s.api_url == URL
    assert s.api_url_parameter is None
    assert s.api_key is None
    assert s.api_key_parameter is None
    assert s.state_table_name is None
    assert s.dead_letter_queue_url is None
    assert s.connect_timeout_seconds > 0
    assert 0 < s.http_timeout_seconds <= 30  # "a sane value": well under any sensible function timeout


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "IMSHOP_API_URL_PARAMETER": "/imshop-push/api-url",
            "IMSHOP_API_KEY": "key-1",
            "IMSHOP_API_KEY_PARAMETER": "/imshop-push/api-key",
            "STATE_TABLE_NAME": "imshop-push-state",
            "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/dlq",
            "RATE_LIMIT_REQUESTS": "3",
            "RATE_LIMIT_WINDOW_SECONDS": "0.5",
            "MAX_RECIPIENTS_PER_REQUEST": "250",
            "HTTP_TIMEOUT_SECONDS": "4.5",
        }
    )

    assert s.api_url is None
    assert s.api_url_parameter == "/imshop-push/api-url"
    assert s.api_key == "key-1"
    assert s.api_key_parameter == "/imshop-push/api-key"
    assert s.state_table_name == "imshop-push-state"
    assert s.dead_letter_queue_url == "https://sqs.eu-central-1.amazonaws.com/123456789012/dlq"
    assert s.rate_limit_requests == 3
    assert s.rate_limit_window_seconds == 0.5  # fractional seconds, for tests
    assert s.max_recipients_per_request == 250
    assert s.http_timeout_seconds == 4.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT_REQUESTS", "abc"),
        ("RATE_LIMIT_REQUESTS", "1.5"),
        ("RATE_LIMIT_REQUESTS", "0"),
        ("RATE_LIMIT_REQUESTS", "-3"),
        ("RATE_LIMIT_REQUESTS", "nan"),
        ("RATE_LIMIT_WINDOW_SECONDS", "0"),
        ("RATE_LIMIT_WINDOW_SECONDS", "-60"),
        ("RATE_LIMIT_WINDOW_SECONDS", "a minute"),
        ("RATE_LIMIT_WINDOW_SECONDS", "nan"),
        ("RATE_LIMIT_WINDOW_SECONDS", "inf"),
        ("MAX_RECIPIENTS_PER_REQUEST", "1001"),
        ("MAX_RECIPIENTS_PER_REQUEST", "0"),
        ("MAX_RECIPIENTS_PER_REQUEST", "1e3"),
        ("HTTP_TIMEOUT_SECONDS", "-1"),
        ("HTTP_TIMEOUT_SECONDS", "0"),
        ("HTTP_TIMEOUT_SECONDS", "nan"),
        ("HTTP_TIMEOUT_SECONDS", "NaN"),
        ("HTTP_TIMEOUT_SECONDS", "-inf"),
        ("HTTP_TIMEOUT_SECONDS", "10s"),
        ("RATE_LIMIT_MARGIN_SECONDS", "-0.1"),
        ("RATE_LIMIT_MARGIN_SECONDS", "nan"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(variable: str, value: str) -> None:
    message = error_of({**BASE, variable: value})

    assert variable in message


def test_max_recipients_error_says_the_vendor_limit() -> None:
    assert "1000" in error_of({**BASE, "MAX_RECIPIENTS_PER_REQUEST": "1001"})
    assert settings(MAX_RECIPIENTS_PER_REQUEST="1000").max_recipients_per_request == 1000


def test_neither_url_variable_is_an_error_naming_both() -> None:
    message = error_of({})

    assert "IMSHOP_API_URL" in message
    assert "IMSHOP_API_URL_PARAMETER" in message


def test_the_url_parameter_alone_is_enough() -> None:
    s = Settings.from_env({"IMSHOP_API_URL_PARAMETER": "/imshop-push/api-url"})

    assert s.api_url is None
    assert s.api_url_parameter == "/imshop-push/api-url"


@pytest.mark.parametrize(
    "url",
    [
        "http://push.imshop.example/api/7f3c9e0a-path-token",
        "http://10.0.0.5/api/7f3c9e0a-path-token",
        "http://0.0.0.0:8080/7f3c9e0a-path-token",
        "http://localhost.evil.example/7f3c9e0a-path-token",
        "http://127.0.0.1.nip.io/7f3c9e0a-path-token",
    ],
)
def test_plain_http_is_refused_for_a_non_loopback_host(url: str) -> None:
    message = error_of({"IMSHOP_API_URL": url})

    assert "IMSHOP_API_URL" in message
    assert "https" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/push/token",
        "http://127.0.0.2/push/token",
        "http://localhost:8080/push/token",
        "http://LOCALHOST/push/token",
        "http://[::1]:8080/push/token",
        "https://push.imshop.example/push/token",
    ],
)
def test_plain_http_is_accepted_for_loopback_and_https_everywhere(url: str) -> None:
    assert Settings.from_env({"IMSHOP_API_URL": url}).api_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://push.imshop.example/7f3c9e0a-path-token",
        "push.imshop.example/7f3c9e0a-path-token",
        "https:///7f3c9e0a-path-token",
        "/7f3c9e0a-path-token",
    ],
)
def test_a_url_that_is_not_absolute_http_is_refused(url: str) -> None:
    assert "IMSHOP_API_URL" in error_of({"IMSHOP_API_URL": url})


@given(
    host=st.from_regex(r"[a-z][a-z0-9]{0,10}\.example", fullmatch=True),
    token=st.from_regex(r"Zq9[A-Za-z0-9_-]{5,40}", fullmatch=True),  # a prefix no error message can contain
    scheme=st.sampled_from(["http", "ftp", "gopher", ""]),
)
def test_url_errors_never_repeat_the_url_host_or_token(host: str, token: str, scheme: str) -> None:
    url = f"{scheme}://{host}/api/{token}" if scheme else f"{host}/api/{token}"

    with pytest.raises(ConfigError) as caught:
        check_api_url(url, variable="IMSHOP_API_URL")

    message = str(caught.value)
    assert token not in message
    assert host not in message
    assert url not in message
    assert "IMSHOP_API_URL" in message


@pytest.mark.parametrize(
    "variable",
    ["RATE_LIMIT_REQUESTS", "RATE_LIMIT_WINDOW_SECONDS", "MAX_RECIPIENTS_PER_REQUEST", "HTTP_TIMEOUT_SECONDS"],
)
def test_an_empty_number_variable_means_the_default(variable: str) -> None:
    assert settings(**{variable: ""}) == settings()
    assert settings(**{variable: "   "}) == settings()


@pytest.mark.parametrize(
    ("variable", "attribute"),
    [
        ("IMSHOP_API_KEY", "api_key"),
        ("IMSHOP_API_KEY_PARAMETER", "api_key_parameter"),
        ("STATE_TABLE_NAME", "state_table_name"),
        ("DEAD_LETTER_QUEUE_URL", "dead_letter_queue_url"),
        ("IMSHOP_API_URL_PARAMETER", "api_url_parameter"),
    ],
)
def test_an_empty_text_variable_means_unset(variable: str, attribute: str) -> None:
    assert getattr(settings(**{variable: ""}), attribute) is None
    assert getattr(settings(**{variable: " "}), attribute) is None


def test_empty_url_with_a_parameter_uses_the_parameter() -> None:
    s = Settings.from_env({"IMSHOP_API_URL": "", "IMSHOP_API_URL_PARAMETER": "/imshop-push/api-url"})

    assert s.api_url is None
    assert s.api_url_parameter == "/imshop-push/api-url"


def test_both_url_variables_empty_is_the_missing_url_error() -> None:
    message = error_of({"IMSHOP_API_URL": "", "IMSHOP_API_URL_PARAMETER": ""})

    assert "IMSHOP_API_URL_PARAMETER" in message


@pytest.mark.parametrize(("window", "margin"), [("60", 1.2), ("10", 0.2), ("0.5", 0.01), ("3600", 72.0)])
def test_margin_defaults_to_two_percent_of_the_window(window: str, margin: float) -> None:
    assert settings(RATE_LIMIT_WINDOW_SECONDS=window).rate_limit_margin_seconds == pytest.approx(margin)


def test_margin_up_to_five_percent_is_accepted() -> None:
    assert settings(RATE_LIMIT_MARGIN_SECONDS="3").rate_limit_margin_seconds == 3.0
    assert settings(RATE_LIMIT_MARGIN_SECONDS="0").rate_limit_margin_seconds == 0.0


def test_margin_over_five_percent_is_an_error_naming_both_variables() -> None:
    message = error_of({**BASE, "RATE_LIMIT_MARGIN_SECONDS": "3.01"})

    assert "RATE_LIMIT_MARGIN_SECONDS" in message
    assert "RATE_LIMIT_WINDOW_SECONDS" in message


def test_error_for_a_bad_value_quotes_the_value_but_not_the_url() -> None:
    message = error_of({**BASE, "RATE_LIMIT_REQUESTS": "ten"})

    assert "'ten'" in message
    assert "path-token" not in message


# --- keys: what a header can carry (docs/contract.md#secrets-and-personal-data) ------------------------------

KEY = "imshop-live-key-5d41402abc4b2a76"
VISIBLE_ASCII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
SURROUNDING = st.text(" \t\r\n\x0b\x0c", max_size=3)
NOT_IN_A_HEADER = st.characters(codec="utf-8").filter(lambda c: not "!" <= c <= "~")


def key_setting(variable: str, value: str) -> str | None:
    if variable == "HISTORY_API_KEY":
        return HistorySettings.from_env({"HISTORY_TABLE_NAME": "history", variable: value}).api_key
    return settings(**{variable: value}).api_key


@pytest.mark.parametrize("variable", ["IMSHOP_API_KEY", "HISTORY_API_KEY"])
@given(key=VISIBLE_ASCII, before=SURROUNDING, after=SURROUNDING)
def test_a_key_is_its_visible_characters_without_surrounding_whitespace(
    variable: str, key: str, before: str, after: str
) -> None:
    assert key_setting(variable, before + key + after) == key
    assert bearer_key(before + key + after, source="the SSM parameter named by X") == key


@pytest.mark.parametrize("variable", ["IMSHOP_API_KEY", "HISTORY_API_KEY"])
@given(head=VISIBLE_ASCII, inner=NOT_IN_A_HEADER, tail=VISIBLE_ASCII)
def test_a_key_no_header_can_carry_is_refused_naming_the_variable_never_the_key(
    variable: str, head: str, inner: str, tail: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        key_setting(variable, head + inner + tail)

    assert variable in str(caught.value)
    assert str(caught.value) == refusal(variable, "a\nb"), "the text is the same whatever the key: none of it shows"


def refusal(variable: str, key: str) -> str:
    with pytest.raises(ConfigError) as caught:
        key_setting(variable, key)
    return str(caught.value)


@pytest.mark.parametrize("inner", ["\n", "\r\n", "\x00", "\x1b", " ", "\t", "\x7f", "é", "\u2028"])
def test_the_refusal_of_a_key_never_quotes_it(inner: str) -> None:
    for variable in ("IMSHOP_API_KEY", "HISTORY_API_KEY"):
        with pytest.raises(ConfigError) as caught:
            key_setting(variable, KEY[:10] + inner + KEY[10:])
        assert variable in str(caught.value)
        assert KEY[:10] not in str(caught.value)
        assert KEY[10:] not in str(caught.value)


@pytest.mark.parametrize("inner", ["\n", "\r", "\t", " ", "\x01", "\x7f", "\u2028"])
def test_a_url_with_whitespace_or_a_control_character_inside_is_refused_without_showing_it(inner: str) -> None:
    url = URL.replace("-path-", f"-path{inner}-")

    with pytest.raises(ConfigError) as caught:
        check_api_url(url, variable="IMSHOP_API_URL_PARAMETER (its value)")

    assert "IMSHOP_API_URL_PARAMETER" in str(caught.value)
    assert "7f3c9e0a" not in str(caught.value)
    assert "push.imshop.example" not in str(caught.value)
