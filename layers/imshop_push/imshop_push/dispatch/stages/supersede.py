"""Supersede: latest wins per (collapseKey, recipient).

At intake (claimed requests, before planning) each request with a collapseKey records its version in every
slot it still has to send, unless a newer version is there already; a recipient whose slot holds a newer one,
or who a newer request of the same batch also has, is dropped from what is left to send. Right before each
call (`LatestOnly`) the slots are read again: a newer request may have been received by any execution while
this one waited for budget. The slots keep the newest version after it was sent, so a stale request arriving
later is dropped too. A request held for its send time records its version at every hop (`record_held`): it
takes part from when it is received, so an older request of its key received while it waits is not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.collapse import collapsed, order_of, supersedes
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import Recipient, StoreError
from imshop_push.domain.planning import PlannedCall

logger = logging.getLogger(__name__)


class Supersede:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        now = self._ctx.clock()
        tracks = [t for t in batch.claimed.values() if t.fate is Fate.CLAIMED and t.req.collapse_key is not None]
        newest: dict[str, str] = {}
        for track in tracks:
            order = order_of(track.req, track.message, int(now * 1000))
            if order is None:
                continue
            track.collapse = collapsed(track.req, order, track.remaining)
            for slot in track.collapse.slots.values():
                newest[slot] = max(newest.get(slot, track.collapse.version), track.collapse.version)
        if not newest:
            return
        try:
            lost = self._ctx.versions.record(newest, now=now)
        except StoreError:
            logger.exception("cannot record collapseKey versions: those requests go back to SQS")
            for track in tracks:
                track.retry("state store unavailable")
            return
        for track in tracks:
            if track.collapse is not None:
                version = track.collapse.version
                slots = track.collapse.slots.items()
                drop(self._ctx, track, {r for r, s in slots if s in lost or supersedes(newest[s], version)})


def record_held(ctx: Context, tracks: Sequence[Track], now: float) -> None:
    """The versions of requests about to be held, in every slot of theirs (nothing of a held request was sent):
    a newer request takes part in latest wins from when it is received, not only once it is due. Renewed at
    every hop (the same version), so it lives as long as the request waits. A slot that holds a newer version
    already changes nothing here: the request is dropped there when it is due. Raises StoreError."""
    newest: dict[str, str] = {}
    for track in tracks:
        order = order_of(track.req, track.message, int(now * 1000))
        if order is None:
            continue
        track.collapse = collapsed(track.req, order, track.req.recipients)
        for slot in track.collapse.slots.values():
            newest[slot] = max(newest.get(slot, track.collapse.version), track.collapse.version)
    if newest:
        ctx.versions.record(newest, now=now)


class LatestOnly:
    """The check right before a call: a request can be superseded while it waits in the backlog."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def trim(self, call: PlannedCall, owners: Sequence[Track]) -> None:
        """Marks the owners' recipients in `call` that a newer request took; raises StoreError."""
        in_call = set(call.recipients)
        asked: dict[str, tuple[Track, Recipient]] = {}
        versions: dict[str, str] = {}
        for track in owners:
            if track.collapse is None:
                continue
            for recipient, slot in track.collapse.slots.items():
                if recipient in in_call and recipient not in track.superseded:
                    asked[slot] = (track, recipient)
                    versions[slot] = track.collapse.version
        if not versions:
            return
        newer = self._ctx.versions.newer(versions, now=self._ctx.clock())
        by_track: dict[int, tuple[Track, set[Recipient]]] = {}
        for slot in newer:
            track, recipient = asked[slot]
            by_track.setdefault(id(track), (track, set()))[1].add(recipient)
        for track, recipients in by_track.values():
            drop(self._ctx, track, recipients)


def order(track: Track, now: float) -> tuple[int, int] | None:
    """What a re-enqueued copy of the track's request must carry to stay the same version."""
    if track.collapse is not None:
        return track.collapse.order
    return order_of(track.req, track.message, int(now * 1000))


def drop(ctx: Context, track: Track, recipients: set[Recipient]) -> None:
    if not recipients:
        return
    ctx.metric(m.RECIPIENTS_SUPERSEDED, len(recipients))
    logger.info(
        "superseded by a newer request of its collapseKey: not sent",
        extra={"message_id": track.message_id, "recipients": len(recipients)},
    )
    track.drop_superseded(recipients)
