"""Configuration: parsed once per execution environment from the environment, into one typed object.

Every error names the variable, so a misconfigured stack says what to fix in its first log line.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from imshop_push.domain.send_time import (
    DEFAULT_QUIET_HOURS_TIMEZONE,
    DEFAULT_STATE_TTL_SECONDS,
    QuietHours,
    load_zone,
    parse_window,
)

DEFAULT_RATE_LIMIT_REQUESTS = 10
DEFAULT_RATE_LIMIT_WINDOW_SECONDS = 60.0
DEFAULT_MAX_RECIPIENTS_PER_REQUEST = 1000
DEFAULT_HTTP_TIMEOUT_SECONDS = 10.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.0
SAM_LOCAL_HOST = "host.docker.internal"  # the developer's machine, seen from a `sam local` container
DEFAULT_HISTORY_RETENTION_DAYS = 90


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it."""


class ParameterUnreadableError(RuntimeError):
    """An SSM parameter cannot be read now (missing, no permission, SSM down); the message never holds a value."""


SECRET_CACHE_SECONDS = 300


def read_secure_string(name: str) -> str:
    """An SSM SecureString, decrypted, through Powertools Parameters (cached a few minutes: a rotated secret is
    picked up without a redeploy). Surrounding whitespace is dropped: `--value file://key.txt` stores the file's
    final newline, which is never part of a URL or a key."""
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - imports boto3

    try:
        value = parameters.get_parameter(name, decrypt=True, max_age=SECRET_CACHE_SECONDS)
    except parameters.exceptions.GetParameterError as e:
        raise ParameterUnreadableError(str(e) or type(e).__name__) from None  # SSM's words, never a value
    return str(value or "").strip()


def bearer_key(key: str, *, source: str) -> str:
    """The key as it can go into `Authorization: Bearer <key>`: surrounding whitespace dropped, then only visible
    ASCII (a Bearer token's alphabet). Anything else is refused here, as a configuration error that names where
    the key came from and never the key: sent as is, a newline makes http.client raise with the whole header
    in its message (and so in Lambda's log), and a control character would be refused by the vendor every call.
    """
    stripped = key.strip()
    if not stripped:
        raise ConfigError(f"{source} is empty")
    if not all("!" <= c <= "~" for c in stripped):
        raise ConfigError(
            f"{source} is not a usable API key: it holds a space, a control or a non-ASCII character between its"
            " first and last character (the key is not shown)"
        )
    return stripped


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the dispatcher reads from its environment."""

    api_url: str | None
    api_url_parameter: str | None
    api_key: str | None
    api_key_parameter: str | None
    state_table_name: str | None
    dead_letter_queue_url: str | None
    rate_limit_requests: int
    rate_limit_window_seconds: float
    rate_limit_margin_seconds: float
    max_recipients_per_request: int
    http_timeout_seconds: float
    connect_timeout_seconds: float
    state_ttl_seconds: int
    sam_local: bool = False
    """Inside `sam local invoke` (AWS_SAM_LOCAL=true): the sandbox on the host is reachable only as
    host.docker.internal, over plain http."""
    bulk_queue_arn: str | None = None
    """Records from this queue are the bulk lane; every other record is transactional (unset: all are)."""
    bulk_dead_letter_queue_url: str | None = None
    """Where poison from the bulk lane goes (unset: to DEAD_LETTER_QUEUE_URL with the rest)."""
    history_table_name: str | None = None  # None: no in-app history is written
    pending_table_name: str | None = None  # None: deferred requests wait as copies (shared waiting is off)
    history_retention_days: int = DEFAULT_HISTORY_RETENTION_DAYS
    quiet_hours: QuietHours | None = None  # the bulk lane's; None: none

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        api_url = _text(env, "IMSHOP_API_URL")
        api_url_parameter = _text(env, "IMSHOP_API_URL_PARAMETER")
        if api_url is None and api_url_parameter is None:
            raise ConfigError("IMSHOP_API_URL or IMSHOP_API_URL_PARAMETER must be set (the IMSHOP push API URL)")
        sam_local = env.get("AWS_SAM_LOCAL") == "true"
        if api_url is not None:
            check_api_url(api_url, variable="IMSHOP_API_URL", sam_local=sam_local)
        window = _number(env, "RATE_LIMIT_WINDOW_SECONDS", DEFAULT_RATE_LIMIT_WINDOW_SECONDS, float, minimum=0.001)
        default_margin = round(window * 0.02, 6)  # 2 %: clock skew between executions and the vendor's counter
        margin = _number(env, "RATE_LIMIT_MARGIN_SECONDS", default_margin, float, minimum=0.0)
        if margin > window * 0.05:
            raise ConfigError(
                f"RATE_LIMIT_MARGIN_SECONDS must be at most 5% of RATE_LIMIT_WINDOW_SECONDS ({window * 0.05:g})"
            )
        max_recipients = _number(env, "MAX_RECIPIENTS_PER_REQUEST", DEFAULT_MAX_RECIPIENTS_PER_REQUEST, int, minimum=1)
        if max_recipients > DEFAULT_MAX_RECIPIENTS_PER_REQUEST:
            raise ConfigError("MAX_RECIPIENTS_PER_REQUEST must be at most 1000 (the vendor's limit)")
        return cls(
            api_url=api_url,
            api_url_parameter=api_url_parameter,
            api_key=_key(env, "IMSHOP_API_KEY"),
            api_key_parameter=_text(env, "IMSHOP_API_KEY_PARAMETER"),
            state_table_name=_text(env, "STATE_TABLE_NAME"),
            dead_letter_queue_url=_text(env, "DEAD_LETTER_QUEUE_URL"),
            rate_limit_requests=_number(env, "RATE_LIMIT_REQUESTS", DEFAULT_RATE_LIMIT_REQUESTS, int, minimum=1),
            rate_limit_window_seconds=window,
            rate_limit_margin_seconds=margin,
            max_recipients_per_request=max_recipients,
            http_timeout_seconds=_number(
                env, "HTTP_TIMEOUT_SECONDS", DEFAULT_HTTP_TIMEOUT_SECONDS, float, minimum=0.001
            ),
            connect_timeout_seconds=_number(
                env, "HTTP_CONNECT_TIMEOUT_SECONDS", DEFAULT_CONNECT_TIMEOUT_SECONDS, float, minimum=0.001
            ),
            state_ttl_seconds=_number(env, "STATE_TTL_SECONDS", DEFAULT_STATE_TTL_SECONDS, int, minimum=60),
            sam_local=sam_local,
            bulk_queue_arn=_queue_arn(env, "BULK_QUEUE_ARN"),
            bulk_dead_letter_queue_url=_text(env, "BULK_DEAD_LETTER_QUEUE_URL"),
            history_table_name=_text(env, "HISTORY_TABLE_NAME"),
            pending_table_name=_text(env, "PENDING_TABLE_NAME"),
            history_retention_days=_number(
                env, "HISTORY_RETENTION_DAYS", DEFAULT_HISTORY_RETENTION_DAYS, int, minimum=1
            ),
            quiet_hours=_quiet_hours(env),
        )


def _quiet_hours(env: Mapping[str, str]) -> QuietHours | None:
    """The zone is loaded only when there are quiet hours: without them a runtime lacking the time zone
    database still runs."""
    try:
        window = parse_window(env.get("QUIET_HOURS", ""))
    except ValueError as e:
        raise ConfigError(f"QUIET_HOURS {e}") from None
    if window is None:
        return None
    try:
        zone = load_zone(_text(env, "QUIET_HOURS_TIMEZONE") or DEFAULT_QUIET_HOURS_TIMEZONE)
    except ValueError as e:
        raise ConfigError(f"QUIET_HOURS_TIMEZONE {e}") from None
    return QuietHours(*window, zone)


def check_api_url(url: str, *, variable: str, sam_local: bool = False) -> None:
    """Refuse plain http except to loopback: the URL and key would otherwise cross the network in clear.

    The error never repeats the URL: it is a secret (its path carries the customer's token). Whitespace or a
    control character inside it is refused too: urllib3 would percent-encode it into the path, and every call
    would be a 404.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(f"{variable} must be a URL without spaces or control characters (the URL is not shown)")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{variable} must be an absolute https:// URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname, sam_local=sam_local):
        raise ConfigError(f"{variable} must use https:// (plain http:// is allowed only for loopback hosts)")


def _is_loopback(host: str, *, sam_local: bool) -> bool:
    if host == "localhost" or (sam_local and host == SAM_LOCAL_HOST):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _queue_arn(env: Mapping[str, str], name: str) -> str | None:
    """Checked here: a malformed ARN would silently make the whole bulk lane transactional."""
    arn = _text(env, name)
    if arn is not None:
        parts = arn.split(":")
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
            raise ConfigError(f"{name} must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)")
    return arn


def _key(env: Mapping[str, str], name: str) -> str | None:
    raw = _text(env, name)
    return None if raw is None else bearer_key(raw, source=name)


def _text(env: Mapping[str, str], name: str) -> str | None:
    """Unset and empty mean the same: CloudFormation cannot omit a variable conditionally without noise."""
    value = env.get(name, "").strip()
    return value or None


def _number[T: (int, float)](
    env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T], *, minimum: T
) -> T:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


DEFAULT_HISTORY_MAX_ITEMS = 100
MAX_HISTORY_MAX_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """Everything the history webhook reads from its environment."""

    table_name: str
    api_key: str | None
    api_key_parameter: str | None
    max_items: int
    retention_days: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HistorySettings:
        env = os.environ if env is None else env
        table_name = _text(env, "HISTORY_TABLE_NAME")
        if table_name is None:
            raise ConfigError("HISTORY_TABLE_NAME must be set (the history table)")
        api_key, api_key_parameter = _key(env, "HISTORY_API_KEY"), _text(env, "HISTORY_API_KEY_PARAMETER")
        if api_key is None and api_key_parameter is None:
            raise ConfigError("HISTORY_API_KEY or HISTORY_API_KEY_PARAMETER must be set (the webhook's Bearer key)")
        max_items = _number(env, "HISTORY_MAX_ITEMS", DEFAULT_HISTORY_MAX_ITEMS, int, minimum=1)
        if max_items > MAX_HISTORY_MAX_ITEMS:
            raise ConfigError(f"HISTORY_MAX_ITEMS must be at most {MAX_HISTORY_MAX_ITEMS} (one Query's worth)")
        return cls(
            table_name=table_name,
            api_key=api_key,
            api_key_parameter=api_key_parameter,
            max_items=max_items,
            retention_days=_number(env, "HISTORY_RETENTION_DAYS", DEFAULT_HISTORY_RETENTION_DAYS, int, minimum=1),
        )
