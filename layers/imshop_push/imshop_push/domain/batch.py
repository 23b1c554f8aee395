"""The per-batch object the stages fill: one `Track` per record, and the calls of this attempt."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from imshop_push.domain.fate import Track
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Content, Deadline, Recipient, RecordResult
from imshop_push.domain.pending import PendingCopy
from imshop_push.domain.planning import PlannedCall


@dataclass(slots=True)
class Attempt:
    """The calls of one invocation. `recorded` is how many have call records (the attempt item says so), so a
    redelivery reads the calls that were started, not every call that was planned."""

    id: str
    calls: list[PlannedCall] = field(default_factory=list)
    recorded: int = 0
    isolation_sent: set[tuple[Content, Recipient]] = field(default_factory=set)
    unrecorded_sent: list[tuple[str, bytes]] = field(default_factory=list)
    """Confirmed calls whose "sent" record the table refused, even after retries: settle tries once more."""
    confirmed: list[tuple[PlannedCall, float]] = field(default_factory=list)
    """The calls IMSHOP confirmed in this attempt, with when: the history is written from these."""


class Taken(NamedTuple):
    """A request taken out of the pending pool: its group, its item there, and the wake that took it."""

    group: str
    key: str
    wake: Track
    more: bool  # the take was as large as allowed: the pool may hold more of the group
    copy: PendingCopy  # its item, to write again (renewing its expiration) if it is left waiting


@dataclass(slots=True)
class Batch:
    tracks: list[Track]  # one per SQS message id, in the order SQS handed them over
    deadline: Deadline
    attempt: Attempt
    claimed: dict[str, Track] = field(default_factory=dict)  # by message id, in the order they were claimed
    taken: dict[str, Taken] = field(default_factory=dict)  # requests a wake took from the pending pool, by id
    pooled: set[tuple[str, str]] = field(default_factory=set)  # (group, key) of what this batch put in the pool
    left_in_pool: set[str] = field(default_factory=set)  # groups of taken requests there was no time to claim
    joining: set[str] = field(default_factory=set)  # groups calls of this batch wait in to fill (`join_waiting.py`)
    later_wakes: list[tuple[Track, str, float]] = field(default_factory=list)
    """Wakes this batch did not take, with their group and turn: written again at the end (`take_pending.py`)."""

    @classmethod
    def of(cls, messages: Sequence[InboundMessage], deadline: Deadline) -> Batch:
        """SQS may hand one message to a batch twice; its one batch response entry speaks for the one fate."""
        seen: dict[str, InboundMessage] = {}
        for message in messages:
            seen.setdefault(message.message_id, message)
        return cls([Track(m) for m in seen.values()], deadline, Attempt(uuid.uuid4().hex))

    def parsed(self) -> list[Track]:
        return [t for t in self.tracks if t.request is not None]

    def owners(self, call: PlannedCall) -> list[Track]:
        return [self.claimed[mid] for mid in call.message_ids]

    def add_calls(self, calls: Sequence[PlannedCall]) -> None:
        for call in calls:
            index = len(self.attempt.calls)
            self.attempt.calls.append(call)
            for track in self.owners(call):
                track.carry(index)

    def replace_call(self, index: int, splits: Sequence[PlannedCall]) -> None:
        """Call `index` is answered by `splits` (each carried before the call lets go of its owners)."""
        owners = self.owners(self.attempt.calls[index])
        self.add_calls(splits)
        for track in owners:
            track.call_done(index)

    def results(self) -> dict[str, RecordResult]:
        """One per SQS message: the requests taken from the pending pool answer to it, not to SQS."""
        return {t.message_id: t.result() for t in self.tracks if t.message_id not in self.taken}
