"""History copies: the entries an earlier invocation kept (`stages/history.py`) are written by the one that
receives their copy, early, before any rate budget is spent, within the history's time of this invocation.

A copy is known by its exact body and holds a random token; the entries come from the state table, so a copy
written by hand names nothing and writes nothing. Written: the kept item is removed and the copy acknowledged
(received again, it finds nothing). The table refusing: the copy goes back to SQS and comes again. No time
left (for all of it): it is passed on, written again to its queue for the next invocation (what was written is
not kept again), so waiting is never a receive more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.history import write
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.history import HistoryEntry, HistoryWriter, history_copy_token, write_parts
from imshop_push.domain.model import StoreError

logger = logging.getLogger(__name__)


class WriteKeptHistory:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        copies = [
            (t, token) for t in batch.tracks if t.fate is Fate.RECEIVED and (token := history_copy_token(t.message))
        ]
        if not copies:
            return
        writer = self._ctx.history
        deadline = batch.deadline
        until = min(self._ctx.clock() + deadline.history_seconds, deadline.last_call_start)
        written = 0
        for track, token in copies:
            if writer is None:
                logger.warning("a history copy, but the history is not enabled: its entries are not written")
                track.history_copy("the history is not enabled")
            elif self._ctx.clock() >= until:
                self._pass_on(track, token, deadline.history_seconds)
            else:
                written += self._write(writer, track, token, until, deadline.history_seconds)
        self._ctx.metric(m.HISTORY_ENTRIES_WRITTEN, written)

    def _write(self, writer: HistoryWriter, track: Track, token: str, until: float, seconds: float) -> int:
        """How many entries it wrote, WRITE_PART_ENTRIES at a time while the time lasts; the copy's fate says what
        became of the rest."""
        try:
            entries = writer.kept(token)
        except StoreError as e:
            logger.warning("cannot read kept history entries; the copy goes back to SQS: %s", e)
            track.retry("state store unavailable")
            return 0
        if entries is None:
            track.history_copy("nothing is kept under its token (written already, or not the dispatcher's)")
            return 0
        written = 0
        for part in write_parts(entries):
            if not write(self._ctx, writer, part, until):
                break
            written += len(part)
        if written == len(entries):
            self._forget(writer, token)
            track.history_copy(f"wrote {written} kept history entries")
        elif self._ctx.clock() < until and not written:
            track.retry("the history table did not take the kept entries")
        else:
            self._pass_on(track, token, seconds, writer=writer, rest=entries[written:] if written else None)
        return written

    def _pass_on(
        self,
        track: Track,
        token: str,
        seconds: float,
        *,
        writer: HistoryWriter | None = None,
        rest: Sequence[HistoryEntry] | None = None,
    ) -> None:
        """No time for (the `rest` of) it here: the next invocation's, as a new copy (of a new item, when part
        was written). An invocation that never has any time for it (a function timeout that leaves calls none)
        hands it back to SQS instead of passing it round for ever."""
        if seconds <= 0:
            track.retry("no history time left in this invocation")
            return
        passed = token
        if writer is not None and rest is not None:
            try:
                passed = writer.keep(rest)
            except StoreError as e:
                logger.warning("cannot keep the rest of kept history entries; the copy goes back to SQS: %s", e)
                track.retry("state store unavailable")
                return
        if not self._ctx.backlog.history_copy(track.message.event_source_arn, passed):
            track.retry("could not pass the history copy on")
            return
        if writer is not None and passed != token:
            self._forget(writer, token)
        track.history_copy("passed on: no history time left in this invocation")

    def _forget(self, writer: HistoryWriter, token: str) -> None:
        try:
            writer.forget(token)
        except StoreError as e:  # written: a copy received again writes the same entries again, harmlessly
            logger.warning("kept history entries written but not forgotten: %s", e)
