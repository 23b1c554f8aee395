"""Figure 3: peak RSS of a worker handling a 6 MB batch vs its RSS after import."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from imshop_push_local.sandbox import ImshopSandbox

from bench.common import (
    CPU_CONTENTS,
    SMALLEST_LAMBDA_MB,
    Console,
    Figure,
    _Context,
    _event_file,
    _handler_env,
    _memory_mb,
    _run_child,
)
from bench.events import _size, six_mb_event


def _child_handle(event_path: str, result_path: str) -> None:
    """Import the handler, note RSS, handle one event read as Lambda's runtime would (bytes -> json), note peak."""
    import app

    after_import = _memory_mb()
    payload = Path(event_path).read_bytes()
    event = json.loads(payload)
    del payload
    started = time.perf_counter()
    response = app.lambda_handler(event, cast("LambdaContext", _Context()))
    wall = time.perf_counter() - started
    peak = _memory_mb()
    Path(result_path).write_text(
        json.dumps(
            {
                "rss_after_import_mb": after_import["VmRSS"],
                "peak_mb": peak["VmHWM"],
                "records": len(event["Records"]),
                "failures": len(response.get("batchItemFailures", [])),
                "wall_s": wall,
            }
        )
    )


def _handle_in_worker(console: Console, sandbox: ImshopSandbox, event: dict[str, Any]) -> tuple[dict[str, Any], int]:
    sandbox.reset()
    with _event_file(event) as path:
        result = _run_child(console, ["_handle", path], _handler_env(sandbox))
    return result, len(sandbox.calls)


def _check_delivery(sandbox: ImshopSandbox, event: dict[str, Any]) -> list[str]:
    """Exactly once per (content, recipient), nothing over 1000 recipients per call."""
    from imshop_push.domain.parsing import parse_body

    expected: set[tuple[str, str, str | None, str, str]] = set()
    for record in event["Records"]:
        request = parse_body(record["body"], message_id=record["messageId"])
        c = request.content
        for field, rid in request.recipients:
            expected.add((c.title, c.summary, c.deeplink, "user" if field == "userIds" else "install", rid))
    delivered = sandbox.delivered()
    problems = []
    if set(delivered) != expected:
        problems.append(f"delivered {len(delivered)} distinct pushes, expected {len(expected)}")
    if any(n > 1 for n in delivered.values()):
        problems.append("some recipient notified twice")
    biggest = max(
        (len(c.body.get("userIds", [])) + len(c.body.get("installIds", [])) for c in sandbox.calls), default=0
    )
    if biggest > 1000:
        problems.append(f"a call carried {biggest} recipients")
    if sandbox.violations:
        problems.append(f"{sandbox.violations} calls over the sandbox's limit")
    return problems


def peak_rss(console: Console, sandbox: ImshopSandbox) -> Figure:
    variants = {
        "small records (1-3 recipients)": six_mb_event(1, recipients=(1, 3), contents=CPU_CONTENTS, short=True),
        "large records (4,000-6,000 recipients)": six_mb_event(2, recipients=(4000, 6000), contents=3),
    }
    results = {}
    for label, event in variants.items():
        size = _size(event)
        console.progress(
            f"peak RSS: a worker handles a {size / 2**20:.2f} MiB batch ({len(event['Records'])} records, {label})"
        )
        result, calls = _handle_in_worker(console, sandbox, event)
        problems = _check_delivery(sandbox, event)
        results[label] = (result, calls, size, problems)
    worst_label = max(results, key=lambda k: results[k][0]["peak_mb"])
    worst, _, _, _ = results[worst_label]
    details = [
        f"{label}: {r['records']} records, {size / 2**20:.2f} MiB, RSS after import {r['rss_after_import_mb']:.1f} MB,"
        f" peak {r['peak_mb']:.1f} MB, {calls} calls, {r['wall_s']:.2f} s, failures {r['failures']}"
        + (f"; PROBLEM: {'; '.join(problems)}" if problems else "")
        for label, (r, calls, size, problems) in results.items()
    ]
    ok = all(not p and r["failures"] == 0 for r, _, _, p in results.values())
    return Figure(
        name="peak RSS, 6 MB batch",
        value=worst["peak_mb"],
        value_text=f"{worst['peak_mb']:.1f} MB",
        baseline_text=f"{worst['rss_after_import_mb']:.1f} MB after import",
        ratio=worst["peak_mb"] / worst["rss_after_import_mb"],
        target=f"total < {SMALLEST_LAMBDA_MB} MB",
        passed=worst["peak_mb"] < SMALLEST_LAMBDA_MB and ok,
        why=f"peak {worst['peak_mb']:.0f} MB with {worst_label}" + ("" if ok else "; delivery problems, see details"),
        details=details,
    )
