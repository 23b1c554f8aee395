"""History: an entry in the in-app history of every `userIds` recipient of every call IMSHOP confirmed.

After Send and before Settle, from what this attempt already holds (no extra receive, no read of the queue).
The push is out and recorded as sent before this stage runs, so nothing here can make a request be sent
again. The stage has a time of its own: `ReserveHistoryTime`, first, makes the last call start earlier by
`Deadline.history_seconds`, so waiting for rate budget cannot use it up. Writes stop at the last call's worst
case plus half that time, and keeping what they did not write takes the other half: settling keeps its reserve.

Entries are written WRITE_PART_ENTRIES at a time, so a write started just before the time is up ends soon after.
What the table refuses (after one retry; the rest is then not tried) or what the time does not cover is not
dropped: it is kept in the state table, and a *history copy* goes to the queue of a request it belongs to
(`HistoryEntriesKept`); the invocation that receives it writes the entries (`stages/history_copies.py`). Only
what cannot even be kept is counted lost (`HistoryEntriesNotWritten`).

A request with a collapseKey writes the entry of its key (`collapsed_entry_id`) with its collapse version, so a
newer request of the key replaces the user's entry in place and an older one, confirmed late, changes nothing.
Writing an entry again (a copy received twice) is harmless: the same entry, or an equal version left as is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Track
from imshop_push.domain.history import (
    HistoryEntry,
    HistoryWriter,
    collapsed_entry_id,
    entry_id,
    kept_parts,
    write_parts,
)
from imshop_push.domain.model import StoreError
from imshop_push.domain.planning import PlannedCall
from imshop_push.domain.threads import map_in_threads

logger = logging.getLogger(__name__)

WRITE_TRIES = 2
HISTORY_RESERVE_SECONDS = 2.0
HISTORY_RESERVE_FRACTION = 0.2
"""The History stage's own time: this fraction of the time calls have, at most HISTORY_RESERVE_SECONDS (a few
BatchWriteItem rounds for thousands of entries). What it does not cover is kept, not lost."""
KEEP_SHARE = 0.5
"""Of the history's time, what writing leaves for keeping what it did not write (one item, one message)."""


class ReserveHistoryTime:
    """First: the calls give up a little of their time so that the history of the last one has some."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        if self._ctx.history is None:
            return
        deadline = batch.deadline
        room = max(0.0, deadline.last_call_start - self._ctx.clock())
        seconds = min(HISTORY_RESERVE_SECONDS, room * HISTORY_RESERVE_FRACTION)
        batch.deadline = replace(deadline, last_call_start=deadline.last_call_start - seconds, history_seconds=seconds)


class History:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        writer = self._ctx.history
        if writer is None or not batch.attempt.confirmed:
            return
        deadline = batch.deadline
        until = (
            deadline.last_call_start + self._ctx.api.worst_case_seconds + deadline.history_seconds * (1 - KEEP_SHARE)
        )
        queue_of: dict[int, str] = {}  # by id(entry): the queue its history copy would go to
        entries: list[HistoryEntry] = []
        for call, confirmed_at in batch.attempt.confirmed:
            owners = batch.owners(call)
            queue = min(owners, key=lambda t: t.message_id).message.event_source_arn
            for entry in entries_of(call, owners, confirmed_at):
                queue_of[id(entry)] = queue
                entries.append(entry)
        written, refused = 0, False
        later: dict[str, list[HistoryEntry]] = {}
        for part in write_parts(entries):
            if not refused and write(self._ctx, writer, part, until):
                written += len(part)
                continue
            refused = refused or self._ctx.clock() < until  # refused in time: the rest is not tried
            for entry in part:
                later.setdefault(queue_of[id(entry)], []).append(entry)
        kept, not_written = self._keep(writer, later)
        self._ctx.metric(m.HISTORY_ENTRIES_WRITTEN, written)
        self._ctx.metric(m.HISTORY_ENTRIES_KEPT, kept)
        self._ctx.metric(m.HISTORY_ENTRIES_NOT_WRITTEN, not_written)
        if kept:
            logger.info("history entries kept for a later invocation", extra={"entries": kept, "written": written})
        if not_written:
            logger.error("history entries lost: neither written nor kept", extra={"entries": not_written})

    def _keep(self, writer: HistoryWriter, later: dict[str, list[HistoryEntry]]) -> tuple[int, int]:
        """Each part in the state table, then its copy on the queue; (entries kept, entries lost)."""
        parts = [(queue, part) for queue, entries in later.items() for part in kept_parts(entries)]

        def keep(item: tuple[str, list[HistoryEntry]]) -> bool:
            queue, part = item
            try:
                token = writer.keep(part)
            except StoreError as e:
                logger.error("cannot keep history entries for later: %s", e)
                return False
            if self._ctx.backlog.history_copy(queue, token):
                return True
            try:
                writer.forget(token)  # nothing names it: let it not wait for the TTL
            except StoreError:
                logger.warning("kept history entries that no copy names stay until the state TTL")
            return False

        results = map_in_threads(keep, parts)
        kept = sum(len(part) for (_, part), ok in zip(parts, results, strict=True) if ok)
        return kept, sum(len(part) for _, part in parts) - kept


def write(ctx: Context, writer: HistoryWriter, entries: Sequence[HistoryEntry], until: float) -> bool:
    """At most WRITE_TRIES tries, each started before `until`."""
    for _ in range(WRITE_TRIES):
        if ctx.clock() >= until:
            return False
        try:
            writer.put(entries)
        except StoreError as e:
            logger.warning("the history table refused a write: %s", e)
            continue
        return True
    return False


def entries_of(call: PlannedCall, owners: list[Track], confirmed_at: float) -> list[HistoryEntry]:
    """One entry per user id of the call. A user asked for by several requests of one merged call got one push,
    so gets one entry: that of the first request (by message id) that carried them, whose `inbox` it shows.

    Carried, not merely named: a request that a newer one of its collapseKey superseded for this user, or whose
    earlier attempt already reached them, did not bring them into this call. Its entry would be the wrong one
    (and its collapse version, older than the newer request's, would have the table refuse it).

    A request switched to its fallback (whose text the call is) has its own entries, with its own text: each
    such request is a notification of its own to the user, whose detail the shared push left out."""
    users = [rid for field, rid in call.recipients if field == "userIds"]
    if not users:
        return []
    at_ms = int(confirmed_at * 1000)
    switched = sorted((t for t in owners if _reached_by_fallback(t, call)), key=lambda t: t.message_id)
    entries = [_entry(t, user, at_ms) for t in switched for user in _carried(t, users)]
    if switched:  # each switched request has its own entries; the call's text is the others' own
        owners = [t for t in owners if t not in switched]
        covered = {user for t in switched for user in _carried(t, users)}
        carried = {user for t in owners for user in _carried(t, users)}
        named = {rid for t in owners for field, rid in t.req.recipients if field == "userIds"}
        users = [user for user in users if user in carried or (user in named and user not in covered)]
        if not users:
            return entries
    ordered = sorted(owners, key=lambda t: t.message_id)
    owner_of: dict[str, Track] = {}
    if len(ordered) == 1:
        owner_of = dict.fromkeys(users, ordered[0])
    else:
        in_call = set(users)
        # Best first: carried (left to send, not superseded); then named and not superseded; then named at all,
        # so a user always has an owner even if the call was planned from what a later check no longer shows.
        ranked: dict[str, tuple[int, Track]] = {}
        for track in ordered:
            left = set(track.remaining)
            for recipient in track.req.recipients:
                field, rid = recipient
                if field != "userIds" or rid not in in_call:
                    continue
                superseded = recipient in track.superseded
                rank = 0 if recipient in left and not superseded else 1 if not superseded else 2
                best = ranked.get(rid)
                if best is None or rank < best[0]:
                    ranked[rid] = (rank, track)
        owner_of = {rid: track for rid, (_, track) in ranked.items()}
    entries.extend(_entry(owner_of[user], user, at_ms) for user in users)
    return entries


def _entry(track: Track, user: str, at_ms: int) -> HistoryEntry:
    """The request's own text, also when the push carried its fallback's: the detail the short push lacked."""
    request = track.req
    content, inbox = request.content, request.inbox
    entry_key, version = _identity(track)
    return HistoryEntry(
        user_id=user,
        id=entry_key,
        title=content.title,
        created_on=at_ms,
        updated_on=at_ms,
        text=content.summary,
        deep_link=content.deeplink,
        url=inbox.url if inbox else None,
        promocode=inbox.promocode if inbox else None,
        version=version,
    )


def _reached_by_fallback(track: Track, call: PlannedCall) -> bool:
    fallback = track.req.fallback
    return track.switched and fallback is not None and fallback.content == call.content


def _carried(track: Track, users: list[str]) -> list[str]:
    """The call's users this request carried: left to send, not superseded."""
    wanted = {rid for field, rid in track.remaining if field == "userIds" and (field, rid) not in track.superseded}
    return [user for user in users if user in wanted]


def _identity(track: Track) -> tuple[str, str | None]:
    """The entry's id and collapse version. Supersede gives every claimed request with a collapseKey its
    version; one without (none here) keeps an entry of its own rather than risk overwriting a newer one."""
    key, collapse = track.req.collapse_key, track.collapse
    if key is None or collapse is None:
        return entry_id(track.req.idempotency_key), None
    return collapsed_entry_id(key), collapse.version
