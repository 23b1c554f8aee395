"""IMSHOP's notification-history webhook: a Lambda function URL (payload format 2.0) event in, its answer out.

`POST /history` {"userId"} answers {"history": [...]} newest first; `POST /history/read` {"userId", "ids"} sets
`readOn` and answers {}. Every request must carry the configured key as `Authorization: Bearer <key>`; without it
the answer is 401 and nothing else, whatever the route (an unauthenticated caller learns nothing, not even which
routes exist). Then: another route 404, another method 405, bad input 400 with the reason; a store or secret
that is unavailable is 503. Never a 5xx for bad input. Logs carry masked user ids only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from imshop_push.domain import observability as m
from imshop_push.domain.history import DAY_SECONDS, HistoryReader, HistoryStoreError
from imshop_push.domain.masking import mask_recipient
from imshop_push.domain.observability import MetricSink

logger = logging.getLogger(__name__)

HISTORY_PATH = "/history"
READ_PATH = "/history/read"
MAX_ID_CHARS = 256
MAX_BODY_BYTES = 256 * 1024

type Event = Mapping[str, Any]
type Answer = dict[str, Any]


class BadRequestError(ValueError):
    """The caller's mistake; the text says which field and why (and never repeats a user id)."""


class KeyUnavailableError(RuntimeError):
    """The webhook's key cannot be read now (SSM down, parameter missing): nobody can be let in."""


class HistoryApi:
    def __init__(
        self,
        reader: HistoryReader,
        *,
        key: Callable[[], str],
        max_items: int,
        retention_days: int,
        metric: MetricSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._key = key
        self._max_items = max_items
        self._retention_ms = retention_days * DAY_SECONDS * 1000
        self._metric = metric
        self._clock = clock

    def handle(self, event: Event) -> Answer:
        try:
            if not self._authorized(event):
                self._metric(m.HISTORY_UNAUTHORIZED, 1)
                return _answer(401)
        except KeyUnavailableError as e:
            logger.error("the webhook key is unavailable: %s", e)
            return _answer(503)
        path = str(event.get("rawPath") or "")
        if path not in (HISTORY_PATH, READ_PATH):
            return _answer(404)
        method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
        if method != "POST":
            return _answer(405, headers={"allow": "POST"})
        try:
            body = _json_object(event)
            user = _user_id(body)
            if path == HISTORY_PATH:
                return self._history(user)
            return self._mark_read(user, _ids(body, self._max_items))
        except BadRequestError as e:
            logger.info("bad history request: %s", e)
            return _answer(400, {"message": str(e)})
        except HistoryStoreError as e:
            logger.error("the history table is unavailable: %s", e)
            return _answer(503)

    def _authorized(self, event: Event) -> bool:
        header = _header(event, "authorization")
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        # Constant time: how much of a guess matched must not show in the answer's timing.
        return hmac.compare_digest(token.strip().encode(), self._key().encode())

    def _history(self, user: str) -> Answer:
        now_ms = int(self._clock() * 1000)
        entries = self._reader.newest(user, limit=self._max_items, not_before_ms=now_ms - self._retention_ms)
        self._metric(m.HISTORY_READS, 1)
        logger.info("history read", extra={"user": mask_recipient(user), "entries": len(entries)})
        return _answer(200, {"history": [e.as_vendor_json() for e in entries]})

    def _mark_read(self, user: str, ids: Sequence[str]) -> Answer:
        marked = self._reader.mark_read(user, ids, read_on_ms=int(self._clock() * 1000))
        self._metric(m.HISTORY_READ_MARKS, marked)
        logger.info("read marks", extra={"user": mask_recipient(user), "ids": len(ids), "marked": marked})
        return _answer(200, {})


def _answer(status: int, body: dict[str, Any] | None = None, *, headers: Mapping[str, str] | None = None) -> Answer:
    answer: Answer = {"statusCode": status, "headers": dict(headers or {}), "body": ""}
    if body is not None:
        answer["headers"]["content-type"] = "application/json"
        answer["body"] = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return answer


def _header(event: Event, name: str) -> str | None:
    """Function URLs lower-case header names; an HTTP API may not: compare without case."""
    for key, value in (event.get("headers") or {}).items():
        if str(key).lower() == name:
            return str(value)
    return None


def _json_object(event: Event) -> dict[str, Any]:
    raw: Any = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError("body: is not valid base64") from None
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequestError(f"body: larger than {MAX_BODY_BYTES} bytes")
    if not raw:
        raise BadRequestError("body: a JSON object is required")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError is every way the body fails to parse, not only JSONDecodeError: UnicodeDecodeError, and the
        # plain ValueError of an integer longer than Python's conversion limit (4,300 digits). All are the caller's.
        raise BadRequestError("body: is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequestError("body: must be a JSON object")
    return document


def _user_id(body: Mapping[str, Any]) -> str:
    if "userId" not in body:
        raise BadRequestError("userId: is a required property")
    value = body["userId"]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a numeric id sent as a number is still that id
    if not isinstance(value, str):
        raise BadRequestError("userId: must be a string")
    if not value or len(value) > MAX_ID_CHARS:
        raise BadRequestError(f"userId: must be 1 to {MAX_ID_CHARS} characters")
    return value


def _ids(body: Mapping[str, Any], limit: int) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise BadRequestError("ids: must be an array of notification ids")
    if len(ids) > limit:
        raise BadRequestError(f"ids: at most {limit} ids (HISTORY_MAX_ITEMS)")
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in ids):
        raise BadRequestError(f"ids: every id must be a string of 1 to {MAX_ID_CHARS} characters")
    return list(dict.fromkeys(ids))
