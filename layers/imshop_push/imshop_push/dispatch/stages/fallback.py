"""The switch to a request's fallback text: when its own call cannot start in time, its recipients get the
fallback's text instead, merged with every request of that text (`fallback.py` keeps what must survive).

A request with a fallback is *due* when SQS first accepted it, at its sendAt, or (bulk) when the quiet hours
end, whichever is latest; its own text must start by due + afterSeconds. The dispatcher decides as soon as it
knows, not at that deadline: its own call first asks for a slot without waiting (a free slot is never wasted
on the shorter text, however late); denied, it estimates the turn of each call still to make in this batch
(the next opening, then `limit` calls a window, in plan order), and switches every request whose turn comes
after its deadline. Their recipients leave their own calls and are planned again under the fallback's text,
with the batch's calls of that text not started yet. A call estimated in time waits for its slot until its
deadline at most (other executions may take the openings first), then its requests are switched. A request
deferred later (the invocation's budget ran out) is switched when its turn is past its deadline. A switched
request stays switched: its copies and pool items carry it, and its calls' records tell a redelivery of the
original message.

Not switched: a request an earlier call of its own text may have reached (its outcome unknown: resent in the
text it may have had, never the other), and one taken from the pending pool in a group of its own text (it
waits with requests of that text and shares their calls already).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fallback import carried_of, fallback_wake_at, switch_digests
from imshop_push.domain.fate import Track
from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import Carried
from imshop_push.domain.pending import group_of
from imshop_push.domain.planning import Delivery, PlannedCall, plan_calls
from imshop_push.domain.state import delivery_digests

logger = logging.getLogger(__name__)


def adopt_carried(tracks: Iterable[Track], now: float) -> None:
    """What a copy carries: when the request was first accepted, and whether it is switched already."""
    for track in tracks:
        if track.req.fallback is None or track.first_sent_ms is not None:
            continue
        carried = carried_of(track.message)
        if carried is not None:
            track.first_sent_ms = carried.first_sent_ms
            track.switched = track.switched or carried.switched
        else:
            sent = track.message.sent_timestamp_ms
            track.first_sent_ms = sent if sent is not None else int(now * 1000)


def carried(track: Track, now: float) -> Carried | None:
    """What a copy of the track's request carries; None without a fallback."""
    if track.request is None or track.req.fallback is None:
        return None
    adopt_carried((track,), now)
    assert track.first_sent_ms is not None
    return Carried(track.first_sent_ms, track.switched)


def call_digests(call: PlannedCall, owners: Sequence[Track]) -> list[bytes]:
    """The digests a call is recorded under: its text's, and for each switched request it carries, a switch
    digest per recipient it carries for that request (`fallback.py`)."""
    digests = delivery_digests(call.content, call.recipients)
    for track in owners:
        fallback = track.req.fallback
        if track.switched and fallback is not None and fallback.content == call.content:
            wanted = set(track.remaining)
            digests += switch_digests(track.req.content, [r for r in call.recipients if r in wanted])
    return digests


def count_fallen_back(ctx: Context, call: PlannedCall, owners: Sequence[Track]) -> None:
    """Recipients a confirmed call reached in a fallback's text instead of their own."""
    reached: set[object] = set()
    for track in owners:
        fallback = track.req.fallback
        if track.switched and fallback is not None and fallback.content == call.content:
            wanted = set(track.remaining)
            reached.update(r for r in call.recipients if r in wanted)
    if reached:
        ctx.metric(m.RECIPIENTS_FALLEN_BACK, len(reached))
        lane = ctx.lanes.of_call(t.message.event_source_arn for t in owners)
        ctx.metric(m.per_lane(m.LANE_RECIPIENTS_FALLEN_BACK, lane), len(reached))


class FallbackSwitch:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def may_switch(self, batch: Batch, index: int) -> bool:
        """Call `index` carries a request that would be switched if its call had to wait too long."""
        return any(self._switchable(batch, t) for t in batch.owners(batch.attempt.calls[index]))

    def switch_late(self, batch: Batch, index: int, retry_at: float) -> None:
        """No slot now for call `index`, none before `retry_at`: switch the requests whose own call's turn, by
        this batch's estimate, comes after their deadline, and plan their recipients under their fallbacks."""
        limits = self._ctx.limits
        per_window = max(1, limits.rate_limit_requests)
        calls = batch.attempt.calls
        late: dict[str, Track] = {}
        ahead = 0
        for j in range(index, len(calls)):
            owners = batch.owners(calls[j])
            if not owners or calls[j].isolated:
                continue
            turn = retry_at + (ahead // per_window) * limits.window_seconds
            for track in owners:
                if track.message_id not in late and self._switchable(batch, track) and turn > self.deadline(track):
                    late[track.message_id] = track
            if any(t.message_id not in late for t in owners):
                ahead += 1  # this call is still made: the ones after it wait behind it
        if late:
            self._switch(batch, index, late)

    def wait_until(self, batch: Batch, index: int) -> float | None:
        """How long call `index` may wait for a slot: until the last deadline of its requests, when each of them
        would be switched past it; None when one of them is sent in its own text whenever its slot comes."""
        owners = batch.owners(batch.attempt.calls[index])
        if not owners or not all(self._switchable(batch, t) for t in owners):
            return None
        return max(self.deadline(t) for t in owners)

    def switch_deferred(self, batch: Batch, deferred: Iterable[Track]) -> None:
        """Deferred to a turn past its deadline: its copy carries the switch, and it waits with its fallback's
        text (`stages/pending.py`)."""
        late = [
            t
            for t in deferred
            if t.retry_at is not None and self._switchable(batch, t) and t.retry_at > self.deadline(t)
        ]
        _mark(late, "deferred past its deadline")

    def wake_turn(self, owners: Sequence[Track], opening: float) -> float:
        """The turn a call of these owners, denied a slot until `opening`, waits in the pool for. A call of switched
        requests is woken ahead of the opening (`fallback.fallback_wake_at`): its execution has taken and claimed
        them, and waits for the slot in process with its lane's demand, when the opening comes (woken at the
        opening, it would still be claiming while bulk and own texts take the slots). Any other call: the opening
        (a partial merged call gathers until then)."""
        if not any(t.switched for t in owners):
            return opening
        return fallback_wake_at(opening, self._ctx.clock(), self._ctx.limits.window_seconds)

    def deadline(self, track: Track) -> float:
        """Due + afterSeconds: the latest start of its own call."""
        request = track.req
        assert request.fallback is not None
        adopt_carried((track,), self._ctx.clock())
        first_sent = (track.first_sent_ms or 0) / 1000
        bulk = self._ctx.lanes.of(track.message.event_source_arn) is Lane.BULK
        return self._ctx.send_time.due(first_sent, request.send_at, bulk=bulk) + request.fallback.after_seconds

    def _switchable(self, batch: Batch, track: Track) -> bool:
        fallback = track.req.fallback
        if fallback is None or track.switched or track.keeps_own_text:
            return False
        taken = batch.taken.get(track.message_id)
        return taken is None or taken.group == group_of(track.message.event_source_arn, fallback.content)

    def _switch(self, batch: Batch, index: int, late: dict[str, Track]) -> None:
        """Late requests leave calls `index`.. and are planned, with those calls of their fallbacks' texts (which
        they merge with), as calls appended to the attempt."""
        _mark(late.values(), "its own call cannot start in time")
        texts = {t.req.fallback.content for t in late.values() if t.req.fallback is not None}
        calls = batch.attempt.calls
        deliveries: list[Delivery] = []
        moved: list[tuple[int, list[Track]]] = []
        for j in range(index, len(calls)):
            call = calls[j]
            owners = batch.owners(call)
            if not owners or call.isolated:
                continue
            leaving = owners if call.content in texts else [t for t in owners if t.message_id in late]
            if not leaving:
                continue
            for track in leaving:
                wanted = set(track.remaining) - track.superseded
                content = track.text
                deliveries.append(Delivery(track.message_id, content, [r for r in call.recipients if r in wanted]))
            staying = [t for t in owners if t not in leaving]
            calls[j] = _without(call, staying)
            moved.append((j, leaving))
        batch.add_calls(plan_calls(deliveries, max_recipients=self._ctx.limits.max_recipients))
        for j, leaving in moved:
            for track in leaving:
                track.call_done(j)


def _mark(tracks: Iterable[Track], why: str) -> None:
    """One log line per decision, not per request: a peak switches thousands at once."""
    switched = 0
    for track in tracks:
        track.switched = True
        switched += 1
    if switched:
        logger.info("switched to their fallback texts: %s", why, extra={"requests": switched})


def _without(call: PlannedCall, staying: list[Track]) -> PlannedCall:
    """What is left of a call once some of its requests left it: the recipients the others still want."""
    wanted = {r for t in staying for r in t.remaining if r not in t.superseded}
    recipients = tuple(r for r in call.recipients if r in wanted)
    return PlannedCall(call.content, recipients, frozenset(t.message_id for t in staying), call.isolated)
