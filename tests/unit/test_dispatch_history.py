"""The in-app history the dispatcher writes (docs/contract.md#in-app-history): an entry per userIds recipient of
each call IMSHOP confirmed, from what the batch already holds, and never at the cost of a push sent twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import AMBIGUOUS, BONUS, FAILED, SHIPPED, Harness, body, msg

from fake_clock import T0
from imshop_push.dispatcher import Disposition
from imshop_push.history import entry_id
from imshop_push.model import CallOutcome, CallResult
from imshop_push.parsing import PoisonMessageError, parse_body

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


def test_a_history_that_stays_unwritable_is_counted_and_never_resends_the_push() -> None:
    h = Harness(history=True)
    h.history.failures = 99
    message = msg("m1", body(users=["u-1", "u-2"], key="k"))
    assert h.run(message) == {"m1": Disposition.DELIVERED}
    assert h.metrics["HistoryEntriesNotWritten"] == 2
    assert h.metrics["HistoryEntriesWritten"] == 0
    assert len(h.api.calls) == 1
    assert h.run(message) == {"m1": Disposition.DUPLICATE}  # a redelivery neither resends nor rewrites
    assert len(h.api.calls) == 1


def test_history_writes_stop_where_a_last_call_would_have_ended() -> None:
    """Settling keeps its reserve: history writes get at most the time of one more IMSHOP call."""
    h = Harness(history=True)
    h.history.duration = 30.0  # a very slow table: the first write eats the budget
    a, b = body(users=["u-1"], message=SHIPPED), body(users=["u-2"], message=BONUS)
    assert h.run(msg("m1", a), msg("m2", b), seconds=20.0) == {
        "m1": Disposition.DELIVERED,
        "m2": Disposition.DELIVERED,
    }
    assert h.metrics["HistoryEntriesWritten"] == 1
    assert h.metrics["HistoryEntriesNotWritten"] == 1


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
