"""Merging: equal content in one call, recipients deduplicated, split only at the limit, and
nothing but the vendor's fields sent."""

from __future__ import annotations

from collections import Counter

from fakes import SENT
from harness import AMBIGUOUS, BONUS, SHIPPED, Harness, body, msg, phones

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.observability import METRIC_NAMES


def test_same_content_across_records_is_one_call_with_recipients_deduplicated() -> None:
    h = Harness()

    results = h.run(
        msg("m1", body(users=["79990000001", "79990000002"])),
        msg("m2", body(users=["79990000002", "79990000003"], installs=["iid-1"])),
        msg("m3", body(installs=["iid-1", "iid-2"])),
    )

    assert results == {"m1": Disposition.DELIVERED, "m2": Disposition.DELIVERED, "m3": Disposition.DELIVERED}
    [call] = h.api.calls
    assert call.payload == {
        "userIds": ["79990000001", "79990000002", "79990000003"],
        "installIds": ["iid-1", "iid-2"],
        "message": SHIPPED,
    }
    assert h.metrics["ImshopCallsSent"] == 1
    assert h.metrics["RecipientsSent"] == 5
    assert h.metrics["RequestsReceived"] == 3


def test_merged_recipients_are_split_only_at_the_limit() -> None:
    h = Harness(max_recipients=3)

    results = h.run(msg("m1", body(users=phones(4))), msg("m2", body(users=phones(4, start=2))))

    assert set(results.values()) == {Disposition.DELIVERED}
    assert [len(c.recipients) for c in h.api.calls] == [3, 3]
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", p): 1 for p in phones(6)})


def test_different_content_is_never_merged() -> None:
    h = Harness()

    h.run(
        msg("m1", body(users=["u1"])),
        msg("m2", body(users=["u1"], message=BONUS)),
        msg("m3", body(users=["u1"], deeplink="slug://orders")),
    )

    assert len(h.api.calls) == 3
    assert [c.payload.get("deeplink") for c in h.api.calls] == [None, None, "slug://orders"]


def test_extensions_never_reach_imshop() -> None:
    h = Harness()

    h.run(msg("m1", body(users=["u1"], key="order-1", expires_at=T0 + 3600)))

    assert h.api.calls[0].payload == {"userIds": ["u1"], "message": SHIPPED}


def test_every_metric_is_a_declared_name_and_the_main_ones_are_emitted() -> None:
    h = Harness(limit=10, max_recipients=1)
    h.api.script = [CallOutcome(CallResult.RATE_LIMITED, "429", 429, 1.0), SENT, AMBIGUOUS]

    h.run(
        msg("ok", body(users=["u1"])),
        msg("later", body(users=["u2", "u3"], message=BONUS)),
        msg("bad", "not json"),
        msg("old", body(users=["u4"], expires_at=T0 - 1)),
        msg("dup", body(users=["u1"], key="ok")),
        msg("dup2", body(users=["u1"], key="ok")),
        seconds=60,
    )

    assert set(h.metrics) <= METRIC_NAMES  # the harness also asserts this on every single emission
    for name in (
        "RequestsReceived",
        "RequestsInvalid",
        "RequestsExpired",
        "DuplicatesSkipped",
        "ImshopCallsSent",
        "ImshopCallsRateLimited",
        "RecipientsSent",
        "RateLimitWaits",
        "DeadLettered",
    ):
        assert h.metrics[name] > 0, name
    assert h.metrics["RequestsReceived"] == 6
