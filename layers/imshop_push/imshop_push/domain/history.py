"""The in-app notification history: what a user's app shows, kept from what IMSHOP confirmed.

Values and the ports both functions use; no AWS library. The table is keyed so that a user's newest entries are
one Query: partition `user` (a digest of the user id, so the table holds no id in clear), sort `id`, and a local
secondary index on `updatedOn` read newest first. An entry's `id` is derived from the request (its idempotency
key), so the same request written twice is the same entry. With a collapseKey it is derived from the key
instead, and the entry carries the request's collapse version: a newer version updates that one item in place
(which moves it to the top of the index without a second item), an older or equal one changes nothing, so a
request superseded while its call was in flight never overwrites what its successor wrote.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import StoreError

USER_KEY = "user"
ENTRY_KEY = "id"
NEWEST_INDEX = "newest"
UPDATED_ON = "updatedOn"
EXPIRATION = "expiration"
DEFAULT_RETENTION_DAYS = 90
DEFAULT_MAX_ITEMS = 100
DAY_SECONDS = 86_400
KEPT_ITEM_MAX_BYTES = 350_000
"""Entries kept for later are stored compressed, at most this much an item: below DynamoDB's 400 KB with room for
the item's key and attributes."""
WRITE_PART_ENTRIES = 200
"""Entries written at a time: eight BatchWriteItem requests, side by side (`threads.AWS_THREADS`), so one round
trip. Small enough that a write started just before the history's time is up ends soon after."""
_COPY_FIELD = "historyCopy"
_COPY_ABOUT = "writes in-app history entries that were kept for later"
_COPY_PREFIX = f'{{"{_COPY_FIELD}": '
_TOKEN = re.compile(r"[0-9a-f]{32}")


class HistoryStoreError(StoreError):
    """The history table did not take or give what was asked; the adapter translates its client's errors."""


class HistoryEntry(NamedTuple):
    """One notification in one user's history; the optional fields are None when the request had no value."""

    user_id: str
    id: str
    title: str
    created_on: int  # ms: the first confirmed send
    updated_on: int  # ms
    text: str | None = None
    deep_link: str | None = None
    url: str | None = None
    promocode: str | None = None
    version: str | None = None  # with a collapseKey: `collapse.version` of the request, the newest one wins

    def as_vendor_json(self) -> dict[str, object]:
        """The entry as IMSHOP's app reads it: fields without a value are left out, never null."""
        entry: dict[str, object] = {
            "id": self.id,
            "title": self.title,
            "createdOn": self.created_on,
            "updatedOn": self.updated_on,
        }
        for name, value in (
            ("text", self.text),
            ("url", self.url),
            ("deepLink", self.deep_link),
            ("promocode", self.promocode),
        ):
            if value is not None:
                entry[name] = value
        return entry


def user_key(user_id: str) -> str:
    """The partition of a user's entries: the same digest from the dispatcher and from the webhook."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def entry_id(idempotency_key: str) -> str:
    """Stable per request, opaque (a key may say more than the app should see), and the same for all its users."""
    return hashlib.sha256(b"history\0" + idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def collapsed_entry_id(collapse_key: str) -> str:
    """One entry per user and collapseKey, whichever request of the key wrote it; never equal to an `entry_id`."""
    return hashlib.sha256(b"history-collapse\0" + collapse_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def expiration(updated_on_ms: int, retention_days: int) -> int:
    """The TTL attribute (epoch seconds): an entry not updated for `retention_days` is removed by the table."""
    return updated_on_ms // 1000 + retention_days * DAY_SECONDS


class HistoryWriter(Protocol):
    """Where the dispatcher writes entries, and keeps those it could not write yet (HistoryStoreError when the
    store will not do what is asked)."""

    def put(self, entries: Sequence[HistoryEntry]) -> None:
        """Write the entries, retrying what the store leaves unprocessed; HistoryStoreError when it will not.
        An entry with a `version` replaces the stored one of its id only if that one has an older version (or
        none): it keeps `createdOn`, takes the rest from the entry (absent fields removed) and loses `readOn`."""
        ...

    def keep(self, entries: Sequence[HistoryEntry]) -> str:
        """Store the entries durably where only the dispatcher writes, under a new random token (returned) that a
        history copy (`history_copy_body`) names; at most `KEPT_ITEM_MAX_BYTES` encoded (`kept_parts`)."""
        ...

    def kept(self, token: str) -> list[HistoryEntry] | None:
        """The entries kept under the token; None when there are none (written and forgotten, or never kept)."""
        ...

    def forget(self, token: str) -> None:
        """The kept entries are written: remove them."""
        ...


class HistoryReader(Protocol):
    """What the webhook reads and marks."""

    def newest(self, user_id: str, *, limit: int, not_before_ms: int) -> list[HistoryEntry]:
        """At most `limit` entries of the user updated at or after `not_before_ms`, newest first: one Query."""
        ...

    def mark_read(self, user_id: str, ids: Sequence[str], *, read_on_ms: int) -> int:
        """Set `readOn` on the user's entries among `ids`; unknown ids are ignored. Returns how many were marked."""
        ...


def history_copy_body(token: str) -> str:
    """The message that has a later invocation write kept entries: a token, never an entry or a user id."""
    return json.dumps({_COPY_FIELD: token, "about": _COPY_ABOUT})


def history_copy_token(message: InboundMessage) -> str | None:
    """The token of a history copy, or None for any other message.

    Known by its body alone, exactly as `history_copy_body` writes it: never a valid request (no `message`, and a
    request refuses other fields), so no producer's request is ever taken for one, whatever it carries. What it
    writes comes from the dispatcher's own table, never from the message: a copy written by hand names nothing
    there (the token is random) and writes nothing."""
    body = message.body
    if not body.startswith(_COPY_PREFIX):  # every other record: no JSON decoding
        return None
    try:
        token = json.loads(body).get(_COPY_FIELD)
    except (ValueError, RecursionError, AttributeError):
        return None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token) or body != history_copy_body(token):
        return None
    return token


def encode_kept(entries: Sequence[HistoryEntry]) -> bytes:
    """Compressed: the entries of one call share their text, so they shrink to little more than the user ids."""
    rows = [list(e) for e in entries]
    return zlib.compress(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def decode_kept(data: bytes) -> list[HistoryEntry]:
    rows = json.loads(zlib.decompress(data).decode("utf-8", "surrogatepass"))
    return [HistoryEntry(*row) for row in rows]


def write_parts(entries: Sequence[HistoryEntry]) -> list[list[HistoryEntry]]:
    """At most WRITE_PART_ENTRIES entries a part, in order."""
    return [list(entries[start : start + WRITE_PART_ENTRIES]) for start in range(0, len(entries), WRITE_PART_ENTRIES)]


def kept_parts(entries: Sequence[HistoryEntry]) -> list[list[HistoryEntry]]:
    """As few parts as fit one kept item each (halved until they do): usually one, so keeping what an invocation
    could not write is one item and one copy, two requests, whatever their number."""
    if len(entries) <= 1 or len(encode_kept(entries)) <= KEPT_ITEM_MAX_BYTES:
        return [list(entries)] if entries else []
    middle = len(entries) // 2
    return kept_parts(entries[:middle]) + kept_parts(entries[middle:])
