"""Figure 2: handler CPU per record of a 10,000-record batch vs json.loads + a compiled schema check."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from imshop_push_local.sandbox import ImshopSandbox

from bench.common import CPU_CONTENTS, CPU_RECORDS, Console, Figure, _Context, _handler_env, _median, _run_child
from bench.events import lower_bound_of, small_requests_event

CPU_RUNS = 5


class _CpuProbe:
    """The pieces timed in the CPU child, each on the same bodies as the handler."""

    def __init__(self, sandbox_url: str) -> None:
        import fastjsonschema
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

        from imshop_push.adapters.imshop_client import ImshopClient
        from imshop_push.domain.validation import request_schema

        self.context = _Context()
        self._validator = fastjsonschema.compile(request_schema())
        self._client = ImshopClient(sandbox_url, api_key=None, connect_timeout_seconds=3, read_timeout_seconds=10)
        self._processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def baseline(self, bodies: list[str]) -> None:
        """json.loads + the once-compiled validator: the least any handler must do with these bodies."""
        for body in bodies:
            document = json.loads(body)
            if "detail" in document:
                document = document["detail"]
            elif document.get("Type") == "Notification":
                document = json.loads(document["Message"])
            self._validator(document)

    def parse(self, bodies: list[str]) -> None:
        from imshop_push.domain.parsing import parse_body

        for body in bodies:
            parse_body(body, message_id="m")

    def batch_loop(self, event: dict[str, Any]) -> None:
        """Powertools' per-record machinery alone, with a record handler that does nothing."""
        from aws_lambda_powertools.utilities.batch import process_partial_response

        process_partial_response(
            event=event,
            record_handler=lambda _record: "ok",
            processor=self._processor,
            context=cast("LambdaContext", self.context),
        )

    def http(self, calls: int) -> None:
        payload = {"userIds": ["79990000000"], "message": {"title": "t", "summary": "s"}}
        for _ in range(calls):
            self._client.send(payload)

    def handler(self, event: dict[str, Any]) -> None:
        import app

        app.lambda_handler(event, cast("LambdaContext", self.context))

    def fresh_runtime(self, seed: int) -> None:
        """A warm runtime with empty in-process state: the state of earlier batches would otherwise pile up in
        this process (in Lambda it lives in DynamoDB) and slow the garbage collector down, batch after batch."""
        import app

        app._runtime = None
        self.handler(small_requests_event(seed, records=20))


def _cpu(work: Callable[..., object], *args: Any) -> float:
    started = time.process_time()
    work(*args)
    return time.process_time() - started


def _child_cpu(sandbox_url: str, result_path: str) -> None:
    """Handler CPU per record vs json.loads + compiled validation of the same bodies, and where the time goes.

    Only the batch being handled is alive while it is handled, as in Lambda: the garbage collector's full
    passes walk every live object."""
    probe = _CpuProbe(sandbox_url)
    runs: dict[str, list[float]] = {
        k: [] for k in ("base", "handler", "wall", "parse", "batch", "http", "base10", "handler10", "handler_nogc")
    }
    calls = 0
    for run in range(CPU_RUNS):
        event = small_requests_event(run)
        bodies = [r["body"] for r in event["Records"]]
        runs["base"].append(_cpu(probe.baseline, bodies))
        probe.fresh_runtime(1000 + run)
        wall = time.perf_counter()
        runs["handler"].append(_cpu(probe.handler, event))
        runs["wall"].append(time.perf_counter() - wall)
        # Where it goes, measured apart on the same bodies: parsing, Powertools' batch loop, the IMSHOP calls.
        runs["parse"].append(_cpu(probe.parse, bodies))
        runs["batch"].append(_cpu(probe.batch_loop, event))
        calls = lower_bound_of(event)
        runs["http"].append(_cpu(probe.http, calls))
        # What-if, not a figure: the same work with the cyclic garbage collector paused for the invocation.
        probe.fresh_runtime(4000 + run)
        runs["handler_nogc"].append(_cpu(_without_gc, probe.handler, event))
        del event, bodies
        # The same batch size with 10 contents: about what one invocation sends under the vendor's 10 calls/min.
        few = small_requests_event(100 + run, contents=10)
        runs["base10"].append(_cpu(probe.baseline, [r["body"] for r in few["Records"]]))
        probe.fresh_runtime(2000 + run)
        runs["handler10"].append(_cpu(probe.handler, few))
        del few
    # Profile summary, from extra batches outside the timed runs: time in the garbage collector, and the
    # functions with the most own time under cProfile (which inflates small functions: read it as a ranking).
    probe.fresh_runtime(3000)
    gc_seconds = _gc_time(probe.handler, small_requests_event(200))
    probe.fresh_runtime(3001)
    profile = _profile_top(probe.handler, small_requests_event(201))
    Path(result_path).write_text(
        json.dumps({"runs": runs, "calls_per_batch": calls, "gc_seconds": gc_seconds, "profile": profile})
    )


def _without_gc(work: Callable[..., object], *args: Any) -> None:
    import gc

    gc.disable()
    try:
        work(*args)
    finally:
        gc.enable()


def _gc_time(work: Callable[..., object], *args: Any) -> float:
    import gc

    spent = 0.0
    started = 0.0

    def callback(phase: str, _info: dict[str, int]) -> None:
        nonlocal spent, started
        if phase == "start":
            started = time.process_time()
        else:
            spent += time.process_time() - started

    gc.callbacks.append(callback)
    try:
        work(*args)
    finally:
        gc.callbacks.remove(callback)
    return spent


def _profile_top(work: Callable[..., object], *args: Any, count: int = 12) -> list[tuple[str, int, float]]:
    """(function, calls, own seconds) of the `count` functions with the most own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(work, *args)
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, calls, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = Path(filename).name if filename.startswith(("/", ".")) else filename
        rows.append((f"{where}:{line}({name})" if line else name, calls, own))
    return sorted(rows, key=lambda row: row[2], reverse=True)[:count]


def handler_cpu(console: Console, sandbox: ImshopSandbox) -> Figure:
    console.progress(
        f"handler CPU: {CPU_RUNS} batches of {CPU_RECORDS:,} small requests ({CPU_CONTENTS} contents) in a worker"
    )
    data = _run_child(console, ["_cpu", sandbox.url], _handler_env(sandbox))
    runs: dict[str, list[float]] = data["runs"]
    calls: int = data["calls_per_batch"]
    per = {k: _median(v) * 1e6 / CPU_RECORDS for k, v in runs.items()}  # µs per record
    ratio = _median([h / b for h, b in zip(runs["handler"], runs["base"], strict=True)])
    ratio10 = _median([h / b for h, b in zip(runs["handler10"], runs["base10"], strict=True)])
    wall = _median(runs["wall"])
    rest = per["handler"] - per["parse"] - per["batch"] - per["http"]
    without_http = (per["handler"] - per["http"]) / per["base"]
    breakdown = (
        f"parse+unwrap+validate+fingerprint {per['parse']:.1f} (of which the baseline's work {per['base']:.1f}),"
        f" Powertools batch loop {per['batch']:.1f}, {calls} IMSHOP calls {per['http']:.1f}"
        f" ({per['http'] * CPU_RECORDS / calls:.0f} µs each), dispatch+state+plan+metrics+GC {rest:.1f}"
    )
    return Figure(
        name="handler CPU / record (10k batch)",
        value=per["handler"],
        value_text=f"{per['handler']:.1f} µs (batch {_median(runs['handler']):.2f} s CPU, {wall:.2f} s wall)",
        baseline_text=f"{per['base']:.1f} µs loads+validate",
        ratio=ratio,
        target="≤ 3.00x, batch < 1 s",
        passed=ratio <= 3 and wall < 1,
        why=(
            f"µs/record: {breakdown}. Without the IMSHOP calls {without_http:.1f}x; with 10 contents (20 calls)"
            f" {ratio10:.1f}x. The target is out of reach by construction: Powertools' per-record loop (required)"
            f" and the IMSHOP calls of the figure alone take {per['batch'] + per['http']:.1f} µs of the"
            f" {3 * per['base']:.1f} µs that 3x allows, before a record is parsed. Parsing is"
            f" {per['parse'] / per['base']:.1f}x the baseline (request objects, fingerprint). No hot spot is left:"
            " the rest is ~15 per-record steps of 0.5-3 µs each (claims, deliveries, plan, settle, results) plus"
            f" {data['gc_seconds'] * 1e6 / CPU_RECORDS:.0f} µs of garbage collection"
        ),
        details=[
            f"µs/record: {breakdown}",
            f"without the IMSHOP calls: {per['handler'] - per['http']:.1f} µs = {without_http:.2f}x the baseline;"
            f" same batch with 10 contents: {per['handler10']:.1f} µs vs {per['base10']:.1f} µs = {ratio10:.2f}x",
            f"runs, CPU s: {' '.join(f'{x:.3f}' for x in runs['handler'])}; wall s: "
            f"{' '.join(f'{x:.3f}' for x in runs['wall'])}; ratio = median of per-run ratios",
            f"garbage collector: {data['gc_seconds'] * 1e6 / CPU_RECORDS:.1f} µs/record of one batch; with it paused"
            f" during the invocation the handler takes {per['handler_nogc']:.1f} µs"
            f" ({_median([h / b for h, b in zip(runs['handler_nogc'], runs['base'], strict=True)]):.2f}x)",
            "cProfile, one batch, own time (ms, calls): "
            + "; ".join(f"{name} {own * 1000:.0f} ({calls})" for name, calls, own in data["profile"]),
        ],
    )
