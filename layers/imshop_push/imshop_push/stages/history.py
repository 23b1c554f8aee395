"""History: an entry in the in-app history of every `userIds` recipient of every call IMSHOP confirmed.

After Send and before Settle, from what this attempt already holds (no extra receive, no read of the queue).
The push is out and recorded as sent before this stage runs, so nothing here can make a request be sent
again: a write the table refuses is retried once, and what still is not written is counted
(`HistoryEntriesNotWritten`) and logged without recipient ids. The stage spends at most the time a last
IMSHOP call would have had (`Deadline.last_call_start` + the call's worst case): settling keeps its reserve.

A request with a collapseKey writes the entry of its key (`collapsed_entry_id`) with its collapse version, so a
newer request of the key replaces the user's entry in place and an older one, confirmed late, changes nothing.
"""

from __future__ import annotations

import logging

from imshop_push import observability as m
from imshop_push.batch import Batch
from imshop_push.fate import Track
from imshop_push.history import HistoryEntry, HistoryWriter, collapsed_entry_id, entry_id
from imshop_push.model import StoreError
from imshop_push.planning import PlannedCall
from imshop_push.ports import Context

logger = logging.getLogger(__name__)

WRITE_TRIES = 2


class History:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        writer = self._ctx.history
        if writer is None or not batch.attempt.confirmed:
            return
        until = batch.deadline.last_call_start + self._ctx.api.worst_case_seconds
        written = not_written = 0
        for call, confirmed_at in batch.attempt.confirmed:
            entries = entries_of(call, batch.owners(call), confirmed_at)
            if entries and self._write(writer, entries, until):
                written += len(entries)
            else:
                not_written += len(entries)
        self._ctx.metric(m.HISTORY_ENTRIES_WRITTEN, written)
        self._ctx.metric(m.HISTORY_ENTRIES_NOT_WRITTEN, not_written)
        if not_written:
            logger.warning("history entries not written", extra={"entries": not_written, "written": written})

    def _write(self, writer: HistoryWriter, entries: list[HistoryEntry], until: float) -> bool:
        for _ in range(WRITE_TRIES):
            if self._ctx.clock() >= until:
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
    (and its collapse version, older than the newer request's, would have the table refuse it)."""
    users = [rid for field, rid in call.recipients if field == "userIds"]
    if not users:
        return []
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
    at_ms = int(confirmed_at * 1000)
    content = call.content
    id_of = {t.message_id: _identity(t) for t in ordered}
    entries: list[HistoryEntry] = []
    for user in users:
        request = owner_of[user].req
        inbox = request.inbox
        entry_key, version = id_of[request.message_id]
        entries.append(
            HistoryEntry(
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
        )
    return entries


def _identity(track: Track) -> tuple[str, str | None]:
    """The entry's id and collapse version. Supersede gives every claimed request with a collapseKey its
    version; one without (none here) keeps an entry of its own rather than risk overwriting a newer one."""
    key, collapse = track.req.collapse_key, track.collapse
    if key is None or collapse is None:
        return entry_id(track.req.idempotency_key), None
    return collapsed_entry_id(key), collapse.version
