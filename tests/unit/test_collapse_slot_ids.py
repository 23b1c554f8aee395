"""The slot of (collapseKey, recipient) names exactly one pair, whatever the key and the id hold: the separator
the slot's text is joined by (`\\x1f`) may occur in both (docs/contract.md#latest-wins-collapsekey)."""

from __future__ import annotations

import hashlib
import json

from harness import Harness, msg
from hypothesis import given
from hypothesis import strategies as st

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.collapse import slot_id
from imshop_push.domain.model import Recipient, RecipientField

US = "\x1f"
FIELDS: tuple[RecipientField, ...] = ("userIds", "installIds")

# Texts built from the pieces that make a collision: the separator and the field names, among other characters.
pieces = st.lists(st.sampled_from([US, "userIds", "installIds", "a", "b", "7", "é", ""]), max_size=6).map("".join)
texts = st.one_of(pieces, st.text(max_size=12))
pairs = st.tuples(texts, st.tuples(st.sampled_from(FIELDS), texts))


@given(pairs, pairs)
def test_two_slots_are_equal_only_for_the_same_key_and_recipient(
    a: tuple[str, Recipient], b: tuple[str, Recipient]
) -> None:
    assert (slot_id(*a) == slot_id(*b)) == (a == b)


@given(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.sampled_from(FIELDS))
def test_the_separator_cannot_move_between_key_and_recipient(
    head: str, middle: str, tail: str, field: RecipientField
) -> None:
    """`head<US>field<US>middle` + `tail` and `head` + `middle<US>field<US>tail` join to the same text."""
    assert slot_id(f"{head}{US}{field}{US}{middle}", (field, tail)) != slot_id(
        head, (field, f"{middle}{US}{field}{US}{tail}")
    )


@given(st.text(max_size=12).filter(lambda key: US not in key), st.sampled_from(FIELDS), st.text(max_size=12))
def test_a_key_without_the_separator_keeps_the_slot_it_had(key: str, field: RecipientField, rid: str) -> None:
    """Slots stored before this rule stay the newest of their pair: the stored form does not change for them."""
    text = f"{key}{US}{field}{US}{rid}".encode("utf-8", "surrogatepass")
    assert slot_id(key, (field, rid)) == hashlib.blake2b(text, digest_size=16).hexdigest()


def test_a_newer_request_of_another_key_does_not_supersede_a_recipient_it_does_not_have() -> None:
    """Key `a<US>userIds<US>b` to user `c`, newer; key `a` to user `b<US>userIds<US>c`, older: different pairs,
    so both are sent."""
    h = Harness()

    def request(key: str, user: str, created_at: str) -> str:
        document = {"userIds": [user], "message": {"title": "t", "summary": "s"}, "collapseKey": key}
        return json.dumps(document | {"createdAt": created_at})

    newer = msg("newer", request(f"a{US}userIds{US}b", "c", "2027-01-15T08:00:00Z"))
    older = msg("older", request("a", f"b{US}userIds{US}c", "2027-01-15T07:00:00Z"))

    assert h.run(newer) == {"newer": Disposition.DELIVERED}
    assert h.run(older) == {"older": Disposition.DELIVERED}
    assert [c.recipients for c in h.api.calls] == [[("userIds", "c")], [("userIds", f"b{US}userIds{US}c")]]
