"""The in-app history with a collapseKey (docs/contract.md#history-entries): a newer request of the key replaces
the user's entry in place, and a request it superseded never overwrites it, even when confirmed later."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from random import Random

from harness import BONUS, SHIPPED, Harness, body, msg
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.history import HistoryEntry, collapsed_entry_id, entry_id
from imshop_push.domain.inbound import InboundMessage

KEY = "order-123-status"
PAID = {"title": "Заказ оплачен", "summary": "Спасибо"}


def request(
    message_id: str,
    *,
    message: dict[str, str],
    created: float,
    collapse_key: str | None = KEY,
    promocode: str | None = None,
    deeplink: str | None = None,
) -> InboundMessage:
    document = json.loads(body(users=["u-1"], message=message, deeplink=deeplink, key=f"key-{message_id}"))
    if collapse_key is not None:
        document["collapseKey"] = collapse_key
    if promocode is not None:
        document["inbox"] = {"promocode": promocode}
    document["createdAt"] = datetime.fromtimestamp(created, UTC).isoformat()
    return msg(message_id, json.dumps(document, ensure_ascii=False))


def newest(h: Harness) -> list[HistoryEntry]:
    return h.history.newest("u-1", limit=100, not_before_ms=0)


def test_a_newer_request_of_the_key_replaces_the_entry_in_place_and_moves_it_to_the_top() -> None:
    h = Harness(history=True)
    first = request("m1", message=PAID, created=T0, promocode="P1", deeplink="shop://orders/123")
    assert h.run(first) == {"m1": Disposition.DELIVERED}
    (before,) = newest(h)
    assert h.history.mark_read("u-1", [before.id], read_on_ms=int(T0 * 1000) + 1) == 1
    h.clock.now += 100
    assert h.run(request("other", message=BONUS, created=T0 + 50, collapse_key=None)) == {
        "other": Disposition.DELIVERED
    }
    h.clock.now += 100
    assert h.run(request("m2", message=SHIPPED, created=T0 + 150)) == {"m2": Disposition.DELIVERED}

    after, other = newest(h)
    assert other.id == entry_id("key-other")
    assert after.id == before.id == collapsed_entry_id(KEY)
    assert after.created_on == before.created_on == int(T0 * 1000)
    assert after.updated_on == int((T0 + 200) * 1000) > other.updated_on
    assert (after.title, after.text) == (SHIPPED["title"], SHIPPED["summary"])
    assert (after.promocode, after.deep_link) == (None, None)  # absent in the newer request: gone
    assert ("u-1", after.id) not in h.history.read_on  # read before, unread now


def test_without_a_collapse_key_each_request_is_an_entry_of_its_own() -> None:
    h = Harness(history=True)
    h.run(request("m1", message=PAID, created=T0, collapse_key=None))
    h.clock.now += 100
    h.run(request("m2", message=SHIPPED, created=T0 + 100, collapse_key=None))
    assert [e.id for e in newest(h)] == [entry_id("key-m2"), entry_id("key-m1")]


def test_other_collapse_keys_keep_their_own_entries() -> None:
    h = Harness(history=True)
    h.run(request("m1", message=PAID, created=T0, collapse_key="order-1"))
    h.run(request("m2", message=SHIPPED, created=T0 + 1, collapse_key="order-2"))
    assert {e.id for e in newest(h)} == {collapsed_entry_id("order-1"), collapsed_entry_id("order-2")}


def test_a_superseded_request_confirmed_late_never_overwrites_the_newer_entry() -> None:
    """Two executions: the older request passed its last check before the newer one arrived, and its call
    was confirmed after the newer one's entry was written."""
    newer, older = Harness(history=True), Harness(history=True)
    older.history.entries = newer.history.entries  # one table
    newer.run(request("new", message=SHIPPED, created=T0 + 10))
    older.clock.now += 5
    assert older.run(request("old", message=PAID, created=T0)) == {"old": Disposition.DELIVERED}
    (entry,) = newest(newer)
    assert entry.title == SHIPPED["title"]
    assert entry.updated_on == int(T0 * 1000)
    assert older.metrics["HistoryEntriesNotWritten"] == 0  # not an error: the newer entry is the right one


# --- merged calls: the entry of the request that carried the user -------------------------------------------


def keyed(
    message_id: str,
    users: Sequence[str],
    *,
    message: dict[str, str],
    created: float,
    collapse_key: str | None,
) -> InboundMessage:
    """A request whose `inbox.promocode` names it, so an entry shows which request it was written for."""
    document = json.loads(body(users=list(users), message=message, key=f"key-{message_id}"))
    if collapse_key is not None:
        document["collapseKey"] = collapse_key
    document["inbox"] = {"promocode": f"P-{message_id}"}
    document["createdAt"] = datetime.fromtimestamp(created, UTC).isoformat()
    return msg(message_id, json.dumps(document, ensure_ascii=False))


def test_a_merged_call_gives_the_user_the_entry_of_the_request_that_carried_them() -> None:
    """`a` (collapseKey K) and `b` (none) share a text and a user; `n`, newer of K, takes that user from `a`. The
    one push of the shared text reached the user for `b`: theirs is `b`'s entry, besides `n`'s of K."""
    h = Harness(history=True)
    a = keyed("a", ["u-1", "u-2"], message=PAID, created=T0, collapse_key=KEY)
    b = keyed("b", ["u-1"], message=PAID, created=T0, collapse_key=None)
    n = keyed("n", ["u-1"], message=SHIPPED, created=T0 + 10, collapse_key=KEY)
    assert h.run(a, b, n) == {"a": Disposition.DELIVERED, "b": Disposition.DELIVERED, "n": Disposition.DELIVERED}
    assert sorted((c.payload["message"]["title"], tuple(c.payload["userIds"])) for c in h.api.calls) == sorted(
        [(PAID["title"], ("u-2", "u-1")), (SHIPPED["title"], ("u-1",))]
    )
    u1 = {e.id: (e.title, e.promocode) for e in h.history.of("u-1")}
    assert u1 == {entry_id("key-b"): (PAID["title"], "P-b"), collapsed_entry_id(KEY): (SHIPPED["title"], "P-n")}
    (u2,) = h.history.of("u-2")
    assert (u2.id, u2.promocode) == (collapsed_entry_id(KEY), "P-a")
    assert h.metrics["HistoryEntriesNotWritten"] == 0


TEXTS = (PAID, SHIPPED)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(range(len(TEXTS))),
            st.sets(st.sampled_from(["u-1", "u-2", "u-3"]), min_size=1),
            st.sampled_from([None, "k1", "k2"]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_every_pushed_user_gets_the_entry_of_the_first_request_that_carried_them(
    specs: list[tuple[int, set[str], str | None]], rng: Random
) -> None:
    """Any merged batch with collapseKeys: for every push IMSHOP confirmed, the user's entry of that text is that
    of the first request (by message id) of the text that carried them, i.e. that no newer request of its
    collapseKey took them from; never one a newer request superseded."""
    created = list(range(len(specs)))
    rng.shuffle(created)  # the order of createdAt is independent of the order of message ids
    requests = [
        (f"m{i}", TEXTS[text], sorted(users), key, T0 + created[i]) for i, (text, users, key) in enumerate(specs)
    ]
    h = Harness(history=True)
    h.run(*(keyed(mid, users, message=text, created=at, collapse_key=key) for mid, text, users, key, at in requests))

    def carried(request: tuple[str, dict[str, str], list[str], str | None, float], user: str) -> bool:
        _, _, users, key, at = request
        return user in users and (
            key is None or all(other[4] <= at for other in requests if other[3] == key and user in other[2])
        )

    pushed = {(c.payload["message"]["title"], u) for c in h.api.calls for u in c.payload.get("userIds", [])}
    assert pushed == {(r[1]["title"], u) for r in requests for u in r[2] if carried(r, u)}
    for title, user in pushed:
        first = min(r[0] for r in requests if r[1]["title"] == title and carried(r, user))
        entries = [e for e in h.history.of(user) if e.title == title]
        assert [e.promocode for e in entries] == [f"P-{first}"], (title, user)
    assert h.metrics["HistoryEntriesNotWritten"] == 0
