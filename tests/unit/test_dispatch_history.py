"""The in-app history the dispatcher writes (docs/contract.md#in-app-history): an entry per userIds recipient of
each call IMSHOP confirmed, from what the batch already holds, and never at the cost of a push sent twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import WORST_CASE
from harness import AMBIGUOUS, BONUS, FAILED, SHIPPED, Harness, body, msg, phones
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.history import HistoryEntry, entry_id, history_copy_body
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.parsing import PoisonMessageError, parse_body

REJECTED = CallOutcome(CallResult.REJECTED, "IMSHOP answered 400", 400)


def with_inbox(text: str, **inbox: str) -> str:
    document: dict[str, Any] = json.loads(text)
    document["inbox"] = inbox
    return json.dumps(document, ensure_ascii=False)


def test_every_user_of_a_confirmed_call_gets_one_entry_and_install_ids_none() -> None:
    h = Harness(history=True)
    text = body(users=["u-1", "u-2"], installs=["iid-1"], deeplink="shop://order/1", key="order-1")
    assert h.run(msg("m1", text)) == {"m1": Disposition.DELIVERED}
    entries = sorted(h.history.entries.values())
    assert [e.user_id for e in entries] == ["u-1", "u-2"]
    for e in entries:
        assert e.id == entry_id("order-1")
        assert (e.title, e.text, e.deep_link) == (SHIPPED["title"], SHIPPED["summary"], "shop://order/1")
        assert e.created_on == e.updated_on == int(T0 * 1000)
        assert e.url is None
        assert e.promocode is None
    assert h.metrics["HistoryEntriesWritten"] == 2
    assert h.metrics["HistoryEntriesNotWritten"] == 0


def test_inbox_goes_to_the_history_only() -> None:
    h = Harness(history=True)
    text = with_inbox(body(users=["u-1"]), url="https://shop.example/promo", promocode="JAH12DASD")
    h.run(msg("m1", text))
    (entry,) = h.history.entries.values()
    assert (entry.url, entry.promocode) == ("https://shop.example/promo", "JAH12DASD")
    (call,) = h.api.calls
    assert "inbox" not in call.payload
    assert "JAH12DASD" not in json.dumps(call.payload)


def test_inbox_without_user_ids_is_accepted_and_ignored() -> None:
    h = Harness(history=True)
    text = with_inbox(body(installs=["iid-1"]), promocode="X1")
    assert parse_body(text, message_id="m1").inbox is None
    assert h.run(msg("m1", text)) == {"m1": Disposition.DELIVERED}
    assert not h.history.entries
    assert "inbox" not in h.api.calls[0].payload


def test_a_merged_call_gives_each_user_the_entry_of_their_own_request() -> None:
    h = Harness(history=True)
    a = with_inbox(body(users=["u-1", "u-both"], key="a"), promocode="A")
    b = with_inbox(body(users=["u-2", "u-both"], key="b"), promocode="B")
    assert h.run(msg("m1", a), msg("m2", b)) == {"m1": Disposition.DELIVERED, "m2": Disposition.DELIVERED}
    assert len(h.api.calls) == 1  # merged: one push each
    by_user = {e.user_id: e for e in h.history.entries.values()}
    assert set(by_user) == {"u-1", "u-2", "u-both"}
    assert (by_user["u-1"].id, by_user["u-1"].promocode) == (entry_id("a"), "A")
    assert (by_user["u-2"].id, by_user["u-2"].promocode) == (entry_id("b"), "B")
    assert by_user["u-both"].id == entry_id("a")  # one push, one entry: the first request's (by message id)


def test_calls_imshop_did_not_confirm_write_no_history() -> None:
    for outcome in (FAILED, AMBIGUOUS, REJECTED):
        h = Harness(history=True)
        h.api.script = [outcome]
        h.run(msg("m1", body(users=["u-1"])))
        assert not h.history.entries, outcome
        assert not h.history.puts


def test_a_refused_history_write_is_retried() -> None:
    h = Harness(history=True)
    h.history.failures = 1
    assert h.run(msg("m1", body(users=["u-1"]))) == {"m1": Disposition.DELIVERED}
    assert len(h.history.entries) == 1
    assert h.metrics["HistoryEntriesNotWritten"] == 0


def test_a_history_the_table_refuses_is_kept_and_written_by_a_later_invocation() -> None:
    h = Harness(history=True)
    h.history.failures = 99
    message = msg("m1", body(users=["u-1", "u-2"], key="k"))
    assert h.run(message) == {"m1": Disposition.DELIVERED}
    assert (h.metrics["HistoryEntriesKept"], h.metrics["HistoryEntriesNotWritten"]) == (2, 0)
    assert not h.history.entries
    (copy,) = h.backlog.history_copies
    assert copy.event_source_arn == message.event_source_arn  # the request's own queue
    assert "u-1" not in copy.body  # a token, never an entry
    assert h.run(message) == {"m1": Disposition.DUPLICATE}  # a redelivery neither resends nor rewrites
    assert len(h.api.calls) == 1

    h.history.failures = 2  # still refusing when the copy comes: it goes back to SQS, the entries stay kept
    assert h.run(copy) == {copy.message_id: Disposition.RETRY}
    assert not h.history.entries
    assert h.run(copy) == {copy.message_id: Disposition.DELIVERED}
    assert {(e.user_id, e.id) for e in h.history.entries.values()} == {("u-1", entry_id("k")), ("u-2", entry_id("k"))}
    assert h.metrics["HistoryEntriesWritten"] == 2
    assert not h.history.kept_entries  # forgotten once written
    assert h.run(copy) == {copy.message_id: Disposition.DELIVERED}  # SQS delivers at least once: nothing twice
    assert h.history.written == 2
    assert len(h.api.calls) == 1
    assert "RequestsReceived" not in h.metrics or h.metrics["RequestsReceived"] == 2  # a copy is no request


def test_what_cannot_even_be_kept_is_counted_lost() -> None:
    for failing in ("state table", "queue"):
        h = Harness(history=True)
        h.history.failures = 99
        h.history.keep_unavailable = failing == "state table"
        h.backlog.fail_history_copies = failing == "queue"
        assert h.run(msg("m1", body(users=["u-1", "u-2"]))) == {"m1": Disposition.DELIVERED}, failing
        assert (h.metrics["HistoryEntriesKept"], h.metrics["HistoryEntriesNotWritten"]) == (0, 2), failing
        assert not h.history.kept_entries  # a kept part no copy names is not left waiting for the TTL
        assert len(h.api.calls) == 1


def test_a_history_copy_written_by_hand_writes_nothing() -> None:
    h = Harness(history=True)
    forged = msg("f1", history_copy_body("0" * 32))
    assert h.run(forged) == {"f1": Disposition.DELIVERED}
    assert not h.history.puts
    assert not h.api.calls
    h.history.kept_entries["0" * 32] = [HistoryEntry("u-1", "x", "t", 1, 1)]  # only the dispatcher keeps entries
    near_misses = [history_copy_body("0" * 32).replace('": ', '":'), '{"historyCopy": "0000"}', '{"historyCopy": 1}']
    for n, text in enumerate(near_misses):  # anything but the exact body is a request, here poison
        assert h.run(msg(f"p{n}", text)) == {f"p{n}": Disposition.DEAD_LETTERED}
    assert not h.history.puts


def test_what_a_copy_has_no_history_time_left_for_is_passed_on_not_handed_back() -> None:
    """A call to 600 users the table refused: kept as one item, one copy. An invocation has 2 s of history time
    and the table takes 2.5 s a write of 200: each invocation writes what its time allows and passes the rest on
    (a new item and copy, not a receive more), until all are written, each once."""
    h = Harness(history=True)
    h.history.failures = 99
    h.run(msg("m1", body(users=phones(600), key="big")))
    assert (h.metrics["HistoryEntriesKept"], len(h.backlog.history_copies)) == (600, 1)
    h.history.failures, h.history.duration = 0, 2.5
    rests = []
    for _ in range(10):
        (copy,) = h.backlog.history_copies[-1:]
        assert h.run(copy) == {copy.message_id: Disposition.DELIVERED}  # never handed back to SQS
        rests.append(sum(len(e) for e in h.history.kept_entries.values()))
        if not h.history.kept_entries:
            break
    assert rests == [400, 200, 0]
    assert len(h.history.entries) == h.history.written == 600
    assert len(h.backlog.history_copies) == 3


def test_history_writes_stop_where_a_last_call_would_have_ended_and_the_rest_is_kept() -> None:
    """Settling keeps its reserve: history writes get at most the time of one more IMSHOP call and the History
    stage's own time; what they do not cover is kept, and written by the invocation that gets its copy."""
    h = Harness(history=True)
    h.history.duration = 30.0  # a very slow table: the first write eats the budget
    a, b = body(users=phones(200), message=SHIPPED), body(users=["u-2"], message=BONUS)  # two parts: 200 and 1
    assert h.run(msg("m1", a), msg("m2", b), seconds=20.0) == {
        "m1": Disposition.DELIVERED,
        "m2": Disposition.DELIVERED,
    }
    assert (h.metrics["HistoryEntriesWritten"], h.metrics["HistoryEntriesKept"]) == (200, 1)
    h.history.duration = 0.0
    (copy,) = h.backlog.history_copies
    assert h.run(copy) == {copy.message_id: Disposition.DELIVERED}
    assert {e.user_id for e in h.history.entries.values()} == {*phones(200), "u-2"}
    assert h.metrics["HistoryEntriesNotWritten"] == 0


@settings(max_examples=60, deadline=None)
@example(window=59.7)  # the second call starts just before the last moment one may: old budget, none left
@given(window=st.floats(min_value=35.0, max_value=66.0))
def test_waiting_for_rate_budget_does_not_use_up_the_history_time(window: float) -> None:
    """The second call waits for the one slot as long as the invocation allows and takes its worst case; the
    table takes well under the History stage's own time: every confirmed push gets its entry now, none kept."""
    h = Harness(history=True, limit=1, window=window)
    h.api.duration = WORST_CASE
    h.history.duration = 0.8
    h.run(msg("m1", body(users=["u-1"], message=SHIPPED)), msg("m2", body(users=["u-2"], message=BONUS)))
    confirmed = {u for call in h.api.calls for u in call.payload["userIds"]}
    assert {e.user_id for e in h.history.entries.values()} == confirmed
    assert (h.metrics["HistoryEntriesKept"], h.metrics["HistoryEntriesNotWritten"]) == (0, 0)


@settings(max_examples=80, deadline=None)
@given(
    users=st.lists(st.sets(st.sampled_from([f"u-{n}" for n in range(6)]), min_size=1), min_size=1, max_size=4),
    refusals=st.lists(st.integers(min_value=0, max_value=4), min_size=6, max_size=6),
    durations=st.lists(st.sampled_from([0.0, 0.5, 4.0, 40.0]), min_size=6, max_size=6),
    redeliver=st.booleans(),
)
def test_kept_entries_are_written_once_whatever_the_table_refuses(
    users: list[set[str]], refusals: list[int], durations: list[float], redeliver: bool
) -> None:
    """Requests of different texts; for a while the table refuses some writes and is slow at times; every history
    copy is received (twice, when SQS delivers it again) until none is left: each confirmed push has its entry, and no
    entry is written twice."""
    h = Harness(history=True)
    texts = [{"title": f"text {n}", "summary": "s"} for n in range(len(users))]
    h.history.failures, h.history.duration = refusals[0], durations[0]
    h.run(*(msg(f"m{n}", body(users=sorted(u), message=texts[n], key=f"k{n}")) for n, u in enumerate(users)))
    delivered = 0
    for round_ in range(1, 40):
        copies = h.backlog.history_copies[delivered:]
        if not copies:
            break
        delivered = len(h.backlog.history_copies)
        healthy = round_ >= len(refusals)  # the table refuses for a while, not for ever
        h.history.failures = 0 if healthy else refusals[round_]
        h.history.duration = 0.0 if healthy else durations[round_]
        h.clock.now += 1000
        for copy in copies:
            for _ in range(2 if redeliver else 1):
                if h.run(copy) == {copy.message_id: Disposition.RETRY}:
                    h.backlog.history_copies.append(copy)  # back to SQS: received again later
    expected = {(u, entry_id(f"k{n}")) for n, us in enumerate(users) for u in us}
    assert {u for call in h.api.calls for u in call.payload["userIds"]} == {u for u, _ in expected}
    assert set(h.history.entries) == expected
    assert h.history.written == len(expected)  # none twice
    assert not h.history.kept_entries
    assert h.metrics["HistoryEntriesNotWritten"] == 0


def test_without_a_history_table_nothing_is_written_or_counted() -> None:
    h = Harness()
    h.run(msg("m1", with_inbox(body(users=["u-1"]), promocode="X")))
    assert not h.history.puts
    assert "HistoryEntriesWritten" not in h.metrics
    assert h.api.calls[0].payload.keys() == {"userIds", "message"}


def test_an_entry_id_is_stable_per_request_and_opaque() -> None:
    assert entry_id("order-1") == entry_id("order-1") != entry_id("order-2")
    assert "order" not in entry_id("order-1")


@pytest.mark.parametrize(
    ("inbox", "reason"),
    [
        ({"url": "https://x.example/a b"}, "inbox.url: must not contain whitespace"),
        ({"promo": "X"}, "inbox.promo: is not an allowed field (did you mean promocode?)"),
        ({"promocode": ""}, "inbox.promocode: must not be empty"),
        ("X", "inbox: must be an object, got string"),
    ],
)
def test_a_malformed_inbox_is_poison_with_the_field_named(inbox: Any, reason: str) -> None:
    document = json.loads(body(users=["u-1"]))
    document["inbox"] = inbox
    with pytest.raises(PoisonMessageError) as raised:
        parse_body(json.dumps(document), message_id="m1")
    assert raised.value.reason == reason
