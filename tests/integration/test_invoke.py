"""`make invoke`: every sample event of events/ runs through the real handler once against the local world, and
what it prints matches what the contract says happens to each record (valid ones sent once, poison dead-lettered
with its reason, nothing retried), with no recipient id in full."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from imshop_push.domain.model import Content
from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push_local.invoke import ENV_FILE, invoke, main, sample_events
from imshop_push_local.stack import REPO_ROOT


def _expected(event_path: Path) -> tuple[Counter[tuple[str, str]], set[str], set[str]]:
    """(title, recipient) pairs the valid records ask for, once each; the message ids of the poison ones; and the
    titles that wait in the pending pool instead: a partial call of a text more than one request of the batch
    carries waits about a window for more of it (fill before you spend), which one invocation does not see."""
    wanted: Counter[tuple[str, str]] = Counter()
    poison: set[str] = set()
    carriers: Counter[tuple[str, Content]] = Counter()
    for record in json.loads(event_path.read_text(encoding="utf-8"))["Records"]:
        try:
            request = parse_body(record["body"], message_id=record["messageId"])
        except PoisonMessageError:
            poison.add(record["messageId"])
        else:
            wanted |= Counter({(request.content.title, recipient): 1 for _, recipient in request.recipients})
            carriers[(record["eventSourceARN"], request.content)] += 1
    waiting = {content.title for (_, content), n in carriers.items() if n > 1}
    return Counter({pair: n for pair, n in wanted.items() if pair[0] not in waiting}), poison, waiting


def test_there_are_sample_events_and_an_environment() -> None:
    assert len(sample_events()) >= 4
    assert ENV_FILE.exists()
    assert ENV_FILE not in sample_events()


@pytest.mark.parametrize("event_path", sample_events(), ids=lambda p: p.name)
def test_every_sample_event_runs_once_through_the_real_handler(event_path: Path) -> None:
    printed = io.StringIO()
    outcome = invoke(event_path, ENV_FILE, out=printed)
    text = printed.getvalue()

    wanted, poison, waiting = _expected(event_path)
    assert outcome.invocation.error is None, text
    assert outcome.invocation.failed_ids == []
    delivered: Counter[tuple[str, str]] = Counter()
    for call in outcome.calls:
        assert call.status == 200
        delivered.update(
            (call.body["message"]["title"], r)
            for r in [*call.body.get("userIds", []), *call.body.get("installIds", [])]
        )
    assert delivered == wanted
    if waiting:  # their wake is on the queue, for a later invocation
        assert sum(outcome.queued.values()) >= 1, text
    dead = [letter for letters in outcome.dead_letters.values() for letter in letters]
    assert {letter.source_message_id for letter in dead} == poison
    assert all(letter.reason for letter in dead)

    assert '"batchItemFailures": []' in text
    assert (
        "environment of events/env.json; local stand-ins for DEAD_LETTER_QUEUE_URL, IMSHOP_API_URL, STATE_TABLE_NAME"
        in text
    )
    assert f"IMSHOP received {len(outcome.calls)} call(s)" in text
    assert f"Dead-lettered: {len(poison)} message(s)" in text
    for letter in dead:
        assert letter.reason is not None
        assert letter.reason in text
    for _, recipient in wanted:
        assert recipient not in text
    assert not re.search(r"79\d{9}", text)  # no phone number of the event in full, poison's included


def test_parameters_of_the_deployed_account_are_mapped_to_the_local_ones(tmp_path: Path) -> None:
    """An env.json that reads the URL and key from SSM, as the deployed function does: the local parameters hold
    the sandbox's URL and the key it then requires."""
    variables = json.loads(ENV_FILE.read_text(encoding="utf-8"))
    variables["SendNotificationsFunction"].update(
        {
            "IMSHOP_API_URL": "",
            "IMSHOP_API_URL_PARAMETER": "/imshop-push/imshop-api-url",
            "IMSHOP_API_KEY_PARAMETER": "/imshop-push/imshop-api-key",
        }
    )
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(variables))
    printed = io.StringIO()
    outcome = invoke(sample_events()[-1], env_file, out=printed)

    assert outcome.invocation.failed_ids == [], printed.getvalue()
    assert [call.status for call in outcome.calls] == [200]
    assert [call.authorization for call in outcome.calls] == ["Bearer local-invoke-key"]
    assert (
        "local stand-ins for DEAD_LETTER_QUEUE_URL, IMSHOP_API_KEY_PARAMETER, IMSHOP_API_URL_PARAMETER"
        in printed.getvalue()
    )


def test_the_environment_file_is_refused_as_an_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ENV_FILE)]) == 2
    assert "is an environment file (--env-vars), not an event" in capsys.readouterr().err


def test_an_event_that_is_not_an_sqs_batch_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "eventbridge.json"
    path.write_text(json.dumps({"detail-type": "x", "detail": {}}))
    assert main([str(path)]) == 2
    assert "is not an SQS event: it has no Records list" in capsys.readouterr().err


def _make(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAKE"))}
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_invoke_without_an_event_lists_the_sample_events() -> None:
    result = _make("invoke")
    assert result.returncode == 0, result.stderr
    for path in [*sample_events(), ENV_FILE]:
        assert str(path.relative_to(REPO_ROOT)) in result.stdout


def test_make_invoke_runs_an_event() -> None:
    result = _make("invoke", "EVENT=events/order_status.json")
    assert result.returncode == 0, result.stderr
    assert "IMSHOP received 1 call(s)" in result.stdout
    assert "'Заказ №123 передан в доставку' -> 1 recipient(s) ['79*******67']" in result.stdout
    assert "79991234567" not in result.stdout
