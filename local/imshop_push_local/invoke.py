"""`make invoke`: `sam local invoke SendNotificationsFunction -e EVENT --env-vars events/env.json`, without Docker.

    python -m imshop_push_local.invoke [EVENT] [--env-vars events/env.json]

Runs the real handler once, in a fresh process (a cold start), on the event file, against the local world
`make demo` uses: the loopback IMSHOP sandbox and moto provisioned from template.yaml (real durations, no time
scaling). Then prints the partial batch response, what IMSHOP received (recipients masked), what was
dead-lettered and why, and what the function put back on its queues. Without EVENT it lists the sample events.

The environment is events/env.json's, mapped onto the local world (`function_env`): the records name the
deployed queues and env.json names the resources `sam local invoke` can reach, so what names a deployed
resource is replaced by the local one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from imshop_push_local.dlq_queue import peek, to_dead_letter
from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.invoke_env import FUNCTION, UsageError, function_env, load_variables, settings_for
from imshop_push_local.invoke_once import run_once
from imshop_push_local.invoke_report import Outcome, print_outcome
from imshop_push_local.stack import REPO_ROOT, LocalStack
from imshop_push_local.stack_model import LocalAws, LocalQueue

EVENTS_DIR = REPO_ROOT / "events"
ENV_FILE = EVENTS_DIR / "env.json"
DEPLOYED_STACK_NAME = "imshop-push"
"""The stack name the sample events' ARNs assume (`imshop-push-requests`): samconfig.toml's."""
EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("event", nargs="?", help="an SQS event file (default: list the sample events)")
    parser.add_argument("--env-vars", type=Path, default=ENV_FILE, help="as sam local invoke's (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.event:
        list_events(sys.stdout)
        return 0
    try:
        outcome = invoke(Path(args.event), args.env_vars, out=sys.stdout)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_FUNCTION_ERROR if outcome.invocation.error else 0


def sample_events() -> list[Path]:
    return sorted(p for p in EVENTS_DIR.glob("*.json") if p != ENV_FILE)


def list_events(out: TextIO) -> None:
    print("Sample events (make invoke EVENT=<file>, or sam local invoke -e <file> where Docker runs):", file=out)
    for path in sample_events():
        records = json.loads(path.read_text(encoding="utf-8")).get("Records", [])
        forms = sorted({_body_form(r.get("body", "")) for r in records})
        print(f"  {path.relative_to(REPO_ROOT)!s:<40} {len(records)} record(s): {', '.join(forms)}", file=out)
    print(f"  {ENV_FILE.relative_to(REPO_ROOT)!s:<40} the function's environment (--env-vars)", file=out)


def _body_form(body: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(document, dict):
        return "not an object"
    if "detail-type" in document:
        return "EventBridge event"
    if document.get("Type") == "Notification":
        return "SNS notification"
    return "request"


def load_event(path: Path) -> dict[str, Any]:
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    if isinstance(event, dict) and FUNCTION in event:
        raise UsageError(f"{path} is an environment file (--env-vars), not an event; run make invoke for the events")
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise UsageError(f"{path} is not an SQS event: it has no Records list")
    return event


def local_event(event: dict[str, Any], aws: LocalAws) -> tuple[dict[str, Any], list[str]]:
    """The event with each record's source queue mapped to the local queue of the same name in the template
    (`imshop-push-requests` -> `<local stack>-requests`); a queue the template does not have: the request queue."""
    by_deployed_name = {
        DEPLOYED_STACK_NAME + queue.name.removeprefix(aws.stack_name): queue
        for queue in aws.queues.values()
        if queue.name.startswith(aws.stack_name)
    }
    mapped = json.loads(json.dumps(event))
    notes: list[str] = []
    for record in mapped["Records"]:
        if not isinstance(record, dict):
            continue
        source = str(record.get("eventSourceARN", ""))
        queue: LocalQueue = by_deployed_name.get(source.rsplit(":", 1)[-1], aws.queue)
        note = f"records from {source or '(no eventSourceARN)'} -> local queue {queue.name}"
        if note not in notes:
            notes.append(note)
        record["eventSourceARN"] = queue.arn
        record["awsRegion"] = aws.region
    return mapped, notes


def invoke(event_path: Path, env_path: Path = ENV_FILE, *, out: TextIO) -> Outcome:
    event = load_event(event_path)
    variables = load_variables(env_path)
    output = FunctionOutput(Path(tempfile.mkdtemp(prefix="imshop-push-invoke-")) / "function-output.jsonl")
    with LocalStack(settings_for(variables)) as stack:
        local, notes = local_event(event, stack.aws)
        print(f"Invoking {FUNCTION} ({stack.function.handler}) once on {event_path}", file=out)
        print(
            f"  IMSHOP sandbox  {stack.sandbox.url.partition('/api/')[0]}  AWS emulator {stack.aws.endpoint_url}",
            file=out,
        )
        for note in notes:
            print(f"  {note}", file=out)
        env = function_env(stack, variables)
        stand_ins = sorted(name for name, value in variables.items() if env.get(name) != value)
        print(f"  environment of {_shown(env_path)}; local stand-ins for {', '.join(stand_ins) or 'nothing'}", file=out)
        invocation = run_once(stack.function, env, local, output_path=output.path)
        metrics, _ = output.metrics_since_last_read()
        outcome = Outcome(
            invocation=invocation,
            calls=list(stack.sandbox.calls),
            dead_letters={
                q.name: [to_dead_letter(m) for m in peek(_sqs(stack), q.url, limit=100)] for q in _dlqs(stack)
            },
            queued={q.name: _messages(stack, q) for q in _sources(stack)},
            metrics={name: value for name, value in metrics.items() if value},
        )
    print_outcome(outcome, out=out, output_path=output.path)
    return outcome


def _shown(path: Path) -> str:
    absolute = path.resolve()
    return str(absolute.relative_to(REPO_ROOT)) if absolute.is_relative_to(REPO_ROOT) else str(path)


def _sqs(stack: LocalStack) -> Any:
    return stack.aws.client("sqs")


def _dlqs(stack: LocalStack) -> list[LocalQueue]:
    return [stack.aws.dead_letter_queue, stack.aws.bulk_dead_letter_queue]


def _sources(stack: LocalStack) -> list[LocalQueue]:
    return [stack.aws.queue, stack.aws.bulk_queue]


def _messages(stack: LocalStack, queue: LocalQueue) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = _sqs(stack).get_queue_attributes(QueueUrl=queue.url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


if __name__ == "__main__":
    sys.exit(main())
