"""The inbound contract (SPEC section 3): body forms, default idempotency keys, and poison reasons.

A poison reason is what a person reads on the dead-letter message, so the exact wording matters: it must
name the field (with its path) and the rule that was broken.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.validation import validate
from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError
from hypothesis import given
from hypothesis import strategies as st

from imshop_push.parsing import PoisonMessageError, parse_body
from imshop_push.validation import request_schema, validate_request

SQS_ID = "9f1c1b52-5c2e-4a4e-8a3c-3f2d7c0f6a11"
EVENT_ID = "7bf73129-1428-4cd3-a780-95db273d1602"
SNS_ID = "95df01b4-ee98-5cb9-9903-4c221d41eb5e"

MESSAGE = {"title": "Заказ отправлен", "summary": "Заказ 1042 передан в доставку"}
REQUEST: dict[str, Any] = {"userIds": ["79991234567"], "message": MESSAGE}

SCHEMA = request_schema()
TITLE_MAX: int = SCHEMA["properties"]["message"]["properties"]["title"]["maxLength"]
SUMMARY_MAX: int = SCHEMA["properties"]["message"]["properties"]["summary"]["maxLength"]
KEY_MAX: int = SCHEMA["properties"]["idempotencyKey"]["maxLength"]


def eventbridge(detail: Any, *, event_id: str = EVENT_ID) -> dict[str, Any]:
    """As EventBridge delivers an event to an SQS target without an input transformer."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Bonus reminder",
        "source": "retailer.crm",
        "account": "123456789012",
        "time": "2026-05-01T09:00:00Z",
        "region": "eu-central-1",
        "resources": [],
        "detail": detail,
    }


def sns(message: Any, *, message_id: str = SNS_ID) -> dict[str, Any]:
    """As SNS delivers a notification to an SQS subscription without raw message delivery."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:order-events",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2026-05-01T09:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.eu-central-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe",
    }


def with_fields(**fields: Any) -> dict[str, Any]:
    return {**REQUEST, **fields}


def parse(document: Any) -> Any:
    return parse_body(json.dumps(document), message_id=SQS_ID)


def reason_of(body: str) -> str:
    with pytest.raises(PoisonMessageError) as caught:
        parse_body(body, message_id=SQS_ID)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


def reason_for(document: Any) -> str:
    return reason_of(json.dumps(document))


# --- body forms and default idempotency keys ----------------------------------------------------------


def test_raw_request_is_parsed_and_keyed_by_the_sqs_message_id() -> None:
    request = parse({**REQUEST, "deeplink": "slug://orders/1042"})

    assert request.message_id == SQS_ID
    assert request.content.title == MESSAGE["title"]
    assert request.content.summary == MESSAGE["summary"]
    assert request.content.deeplink == "slug://orders/1042"
    assert request.recipients == (("userIds", "79991234567"),)
    assert request.expires_at is None
    assert request.idempotency_key == SQS_ID
    assert request.key_is_message_id is True


def test_deeplink_is_none_when_absent() -> None:
    assert parse(REQUEST).content.deeplink is None


def test_idempotency_key_field_wins_over_the_sqs_message_id() -> None:
    request = parse(with_fields(idempotencyKey="order-1042-shipped"))

    assert request.idempotency_key == "order-1042-shipped"
    assert request.key_is_message_id is False


def test_eventbridge_detail_is_the_request_and_the_event_id_is_the_key() -> None:
    request = parse(eventbridge(REQUEST))

    assert request.recipients == (("userIds", "79991234567"),)
    assert request.content.title == MESSAGE["title"]
    assert request.idempotency_key == EVENT_ID
    assert request.key_is_message_id is False


def test_sns_message_is_the_request_and_the_sns_message_id_is_the_key() -> None:
    request = parse(sns(REQUEST))

    assert request.recipients == (("userIds", "79991234567"),)
    assert request.idempotency_key == SNS_ID
    assert request.key_is_message_id is False


def test_sns_carrying_eventbridge_is_keyed_by_the_innermost_envelope() -> None:
    request = parse(sns(eventbridge(REQUEST)))

    assert request.content.summary == MESSAGE["summary"]
    assert request.idempotency_key == EVENT_ID
    assert request.key_is_message_id is False


@pytest.mark.parametrize(
    "wrap",
    [lambda r: r, eventbridge, sns, lambda r: sns(eventbridge(r))],
    ids=["raw", "eventbridge", "sns", "sns+eventbridge"],
)
def test_idempotency_key_field_wins_over_every_envelope_id(wrap: Any) -> None:
    request = parse(wrap(with_fields(idempotencyKey="bonus-2026-05")))

    assert request.idempotency_key == "bonus-2026-05"
    assert request.key_is_message_id is False


def test_the_same_request_has_the_same_fingerprint_in_every_body_form() -> None:
    fingerprints = {parse(form).fingerprint for form in (REQUEST, eventbridge(REQUEST), sns(REQUEST))}

    assert len(fingerprints) == 1


def test_poison_inside_an_envelope_names_the_request_field() -> None:
    bad = {"userIds": ["1"], "message": {"title": "t"}}

    assert reason_for(eventbridge(bad)) == "message.summary: is a required property"
    assert reason_for(sns(bad)) == "message.summary: is a required property"
    assert reason_for(sns(eventbridge(bad))) == "message.summary: is a required property"


def test_eventbridge_detail_that_is_not_an_object_is_poison() -> None:
    assert reason_for(eventbridge(["not", "an", "object"])).startswith("detail: must be a JSON object")


def test_sns_message_that_is_not_json_is_poison() -> None:
    assert reason_for(sns("userIds=1")).startswith("Message: is not valid JSON")


# --- poison: the body -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["not json", "{", "", "{'userIds': ['1']}"])
def test_body_that_is_not_json_is_poison(body: str) -> None:
    assert reason_of(body).startswith("body: is not valid JSON")


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[]", "array"), ('[{"userIds": ["1"]}]', "array"), ('"hello"', "string"), ("null", "null"), ("42", "number")],
)
def test_body_that_is_not_an_object_is_poison(body: str, kind: str) -> None:
    assert reason_of(body) == f"body: must be a JSON object, got {kind}"


# --- poison: schema reasons name the field and the rule -------------------------------------------------

SCHEMA_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing message", {"userIds": ["1"]}, "message: is a required property"),
    ("missing title", {"userIds": ["1"], "message": {"summary": "s"}}, "message.title: is a required property"),
    ("missing summary", {"userIds": ["1"], "message": {"title": "t"}}, "message.summary: is a required property"),
    (
        "userId typo",
        {"userId": ["1"], "message": MESSAGE},
        "userId: is not an allowed field (did you mean userIds?)",
    ),
    (
        "installId typo",
        {"installId": ["1"], "message": MESSAGE},
        "installId: is not an allowed field (did you mean installIds?)",
    ),
    ("userIds not an array", {"userIds": "79991234567", "message": MESSAGE}, "userIds: must be an array, got string"),
    (
        "userIds item not a string",
        {"userIds": [79991234567], "message": MESSAGE},
        "userIds[0]: must be a string, got number",
    ),
    ("installIds null", {"installIds": None, "message": MESSAGE}, "installIds: must be an array, got null"),
    ("message not an object", {"userIds": ["1"], "message": "hi"}, "message: must be an object, got string"),
    (
        "title not a string",
        {"userIds": ["1"], "message": {"title": 5, "summary": "s"}},
        "message.title: must be a string, got number",
    ),
    ("empty userId", {"userIds": [""], "message": MESSAGE}, "userIds[0]: must not be empty"),
    ("empty userId later", {"userIds": ["1", "2", ""], "message": MESSAGE}, "userIds[2]: must not be empty"),
    ("empty installId", {"installIds": ["iid-1", ""], "message": MESSAGE}, "installIds[1]: must not be empty"),
    ("empty title", {"userIds": ["1"], "message": {"title": "", "summary": "s"}}, "message.title: must not be empty"),
    (
        "empty summary",
        {"userIds": ["1"], "message": {"title": "t", "summary": ""}},
        "message.summary: must not be empty",
    ),
    ("deeplink null", {**REQUEST, "deeplink": None}, "deeplink: must be a string, got null"),
    ("deeplink empty", {**REQUEST, "deeplink": ""}, "deeplink: must not be empty"),
    ("deeplink with space", {**REQUEST, "deeplink": "slug://browse me"}, "deeplink: must not contain whitespace"),
    ("deeplink with tab", {**REQUEST, "deeplink": "slug://browse\t"}, "deeplink: must not contain whitespace"),
    ("deeplink with newline", {**REQUEST, "deeplink": "slug://a\nb"}, "deeplink: must not contain whitespace"),
    ("idempotencyKey empty", {**REQUEST, "idempotencyKey": ""}, "idempotencyKey: must not be empty"),
    ("idempotencyKey number", {**REQUEST, "idempotencyKey": 7}, "idempotencyKey: must be a string, got number"),
    ("expiresAt number", {**REQUEST, "expiresAt": 1767225600}, "expiresAt: must be a string, got number"),
]


@pytest.mark.parametrize(("document", "reason"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_schema_violation_reason_names_field_and_rule(document: dict[str, Any], reason: str) -> None:
    assert reason_for(document) == reason


def test_unknown_field_inside_message_is_rejected_naming_its_path() -> None:
    reason = reason_for({"userIds": ["1"], "message": {**MESSAGE, "body": "text"}})

    assert reason.startswith("message.body: is not an allowed field")


def test_unknown_field_without_a_close_match_lists_the_allowed_fields() -> None:
    reason = reason_for({**REQUEST, "priority": "high"})

    assert reason.startswith("priority: is not an allowed field")
    for allowed in ("userIds", "installIds", "message", "deeplink", "idempotencyKey", "expiresAt"):
        assert allowed in reason


@pytest.mark.parametrize(
    "document",
    [
        {"message": MESSAGE},
        {"userIds": [], "message": MESSAGE},
        {"installIds": [], "message": MESSAGE},
        {"userIds": [], "installIds": [], "message": MESSAGE},
    ],
    ids=["both absent", "userIds empty", "installIds empty", "both empty"],
)
def test_no_recipient_at_all_is_poison(document: dict[str, Any]) -> None:
    reason = reason_for(document)

    assert reason.startswith("userIds:")
    assert "installIds" in reason
    assert "at least one recipient" in reason


def test_an_empty_array_is_fine_while_the_other_has_a_recipient() -> None:
    assert parse({"userIds": [], "installIds": ["iid-1"], "message": MESSAGE}).recipients == (("installIds", "iid-1"),)
    assert parse({"userIds": ["u-1"], "installIds": [], "message": MESSAGE}).recipients == (("userIds", "u-1"),)


def test_bounds_are_the_documented_ones() -> None:
    # The documented bounds: title + summary + deeplink stay under the 4 KB APNs/FCM payload.
    assert (TITLE_MAX, SUMMARY_MAX, KEY_MAX) == (200, 1500, 256)


@pytest.mark.parametrize(("field", "bound"), [("title", TITLE_MAX), ("summary", SUMMARY_MAX)])
def test_title_and_summary_up_to_the_bound_are_accepted_in_characters_not_bytes(field: str, bound: int) -> None:
    message = {**MESSAGE, field: "ж" * bound}  # 2 bytes each in UTF-8: the bound counts characters

    assert getattr(parse({"userIds": ["1"], "message": message}).content, field) == "ж" * bound


@pytest.mark.parametrize(("field", "bound"), [("title", TITLE_MAX), ("summary", SUMMARY_MAX)])
def test_title_and_summary_over_the_bound_are_poison(field: str, bound: int) -> None:
    message = {**MESSAGE, field: "x" * (bound + 1)}

    assert reason_for({"userIds": ["1"], "message": message}) == f"message.{field}: must be at most {bound} characters"


def test_idempotency_key_up_to_256_is_accepted_and_over_is_poison() -> None:
    assert parse(with_fields(idempotencyKey="k" * KEY_MAX)).idempotency_key == "k" * KEY_MAX
    assert reason_for(with_fields(idempotencyKey="k" * (KEY_MAX + 1))) == (
        f"idempotencyKey: must be at most {KEY_MAX} characters"
    )


# --- expiresAt ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2026-12-01T18:00:00Z", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
        ("2026-12-01T21:00:00+03:00", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
        ("2026-12-01T18:00:00.250Z", datetime(2026, 12, 1, 18, 0, 0, 250000, tzinfo=UTC)),
        ("2026-12-01T13:00:00-05:00", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
    ],
)
def test_rfc3339_expiry_is_parsed_to_the_right_instant(value: str, instant: datetime) -> None:
    assert parse(with_fields(expiresAt=value)).expires_at == instant


def test_rfc3339_allows_lower_case_t_and_z() -> None:
    # RFC 3339 section 5.6: "T" and "Z" may alternatively be lower case. A valid request must not be
    # dead-lettered for it.
    assert parse(with_fields(expiresAt="2026-12-01t18:00:00z")).expires_at == datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "tomorrow",
        "2026-12-01T18:00:00",  # no time zone: which 18:00?
        "2026-12-01",  # a date, no time
        "2026-12-01 18:00",  # no zone, no T
        "1767225600",  # epoch seconds as a string
        "18:00:00Z",
    ],
)
def test_expiry_that_is_not_rfc3339_or_has_no_zone_is_poison(value: str) -> None:
    reason = reason_for(with_fields(expiresAt=value))

    assert reason.startswith("expiresAt: must be an RFC 3339 timestamp with a time zone")


@pytest.mark.parametrize(
    "value",
    [
        "20261201T180000Z",  # ISO 8601 basic format
        "2026-W49-2T18:00:00Z",  # ISO 8601 week date
        "2026-12-01T18Z",  # no minutes
        "2026-12-01T18:00:00+0300",  # offset without a colon
    ],
)
def test_iso8601_forms_outside_rfc3339_are_poison(value: str) -> None:
    reason = reason_for(with_fields(expiresAt=value))

    assert reason.startswith("expiresAt: must be an RFC 3339 timestamp")


# --- recipients -----------------------------------------------------------------------------------------


def test_recipients_are_deduplicated_preserving_first_seen_order() -> None:
    request = parse({"userIds": ["b", "a", "b", "c", "a"], "installIds": ["i2", "i1", "i2"], "message": MESSAGE})

    assert request.recipients == (
        ("userIds", "b"),
        ("userIds", "a"),
        ("userIds", "c"),
        ("installIds", "i2"),
        ("installIds", "i1"),
    )


def test_a_user_id_and_an_install_id_with_the_same_text_are_two_recipients() -> None:
    request = parse({"userIds": ["same"], "installIds": ["same"], "message": MESSAGE})

    assert request.recipients == (("userIds", "same"), ("installIds", "same"))


recipient_ids = st.lists(st.text(alphabet="abc123", min_size=1, max_size=3), max_size=12)


@given(user_ids=recipient_ids, install_ids=recipient_ids)
def test_recipients_are_the_ordered_union_of_both_fields(user_ids: list[str], install_ids: list[str]) -> None:
    document = {"userIds": user_ids, "installIds": install_ids, "message": MESSAGE}
    expected = [("userIds", u) for u in dict.fromkeys(user_ids)] + [
        ("installIds", i) for i in dict.fromkeys(install_ids)
    ]
    if not expected:
        assert reason_for(document).startswith("userIds:")
        return

    assert list(parse(document).recipients) == expected


# --- fingerprint ----------------------------------------------------------------------------------------


def test_fingerprint_ignores_the_extensions() -> None:
    plain = parse(REQUEST).fingerprint

    assert parse(with_fields(idempotencyKey="k-1")).fingerprint == plain
    assert parse(with_fields(expiresAt="2026-12-01T18:00:00Z")).fingerprint == plain
    assert parse(with_fields(idempotencyKey="k-2", expiresAt="2027-01-01T00:00:00+03:00")).fingerprint == plain


def test_fingerprint_ignores_json_key_order() -> None:
    reordered = json.dumps(
        {"message": {"summary": MESSAGE["summary"], "title": MESSAGE["title"]}, "userIds": ["79991234567"]}
    )

    assert parse_body(reordered, message_id=SQS_ID).fingerprint == parse(REQUEST).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        with_fields(userIds=["79991234567", "79990000000"]),
        with_fields(userIds=["79990000000"]),
        {"installIds": ["79991234567"], "message": MESSAGE},
        with_fields(message={**MESSAGE, "title": "Заказ доставлен"}),
        with_fields(message={**MESSAGE, "summary": "Другой текст"}),
        with_fields(deeplink="slug://orders/1042"),
    ],
    ids=["recipient added", "recipient changed", "userId became installId", "title", "summary", "deeplink"],
)
def test_fingerprint_changes_with_recipients_or_content(changed: dict[str, Any]) -> None:
    assert parse(changed).fingerprint != parse(REQUEST).fingerprint


@given(
    key=st.text(min_size=1, max_size=40),
    expires=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()
    ),
)
def test_fingerprint_is_invariant_under_any_extension_values(key: str, expires: str) -> None:
    assert parse(with_fields(idempotencyKey=key, expiresAt=expires)).fingerprint == parse(REQUEST).fingerprint


# --- validate_request is Powertools' validate(), compiled once ------------------------------------------

INVALID_FOR_POWERTOOLS: list[Any] = [
    {"userIds": ["1"], "message": {"title": "t"}},
    {"userId": ["1"], "message": MESSAGE},
    {"userIds": [""], "message": MESSAGE},
    {"userIds": [1], "message": MESSAGE},
    {**REQUEST, "deeplink": "a b"},
    {**REQUEST, "deeplink": None},
    {"userIds": ["1"], "message": {"title": "x" * (TITLE_MAX + 1), "summary": "s"}},
    ["not", "an", "object"],
]


@pytest.mark.parametrize("data", INVALID_FOR_POWERTOOLS)
def test_validate_request_raises_what_powertools_validate_raises(data: Any) -> None:
    with pytest.raises(SchemaValidationError) as ours:
        validate_request(data)
    with pytest.raises(SchemaValidationError) as theirs:
        validate(event=data, schema=request_schema())

    for attribute in ("message", "validation_message", "name", "path", "value", "rule", "rule_definition"):
        assert getattr(ours.value, attribute) == getattr(theirs.value, attribute), attribute
    assert str(ours.value) == str(theirs.value)


def test_validate_request_accepts_what_powertools_accepts() -> None:
    document = {
        **REQUEST,
        "installIds": ["iid-1"],
        "deeplink": "slug://browse",
        "idempotencyKey": "k",
        "expiresAt": "x",
    }

    validate_request(document)
    validate(event=document, schema=request_schema())


def test_content_that_would_not_fit_a_push_is_poison_even_within_the_character_bounds() -> None:
    # 4-byte emoji: 1500 characters of summary alone are 6000 bytes, past the 4 KB APNs/FCM payload.
    message = {**MESSAGE, "summary": "🎁" * 1500}

    reason = reason_for({"userIds": ["1"], "message": message})

    assert reason.startswith("message: title, summary and deeplink together are ")
    assert "at most 3500 fit a push" in reason
