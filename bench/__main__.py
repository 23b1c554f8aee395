"""`make bench`: the handler's figures, each beside a baseline measured in the same run, as a ratio.

A benchmark, not a test: nothing here fails the build. Every figure is printed with its baseline, ratio and
target; a missed target is marked MISSED and explained in the closing note, and the exit status stays 0.

Figures (issue 4):
  1. cold start        fresh-process `import app` vs a fresh-process import of what it really needs at import
                       time (Powertools Logger, Metrics and batch processing; urllib3; fastjsonschema)
  2. handler CPU       per record of a 10,000-record batch (parse, unwrap, validate, merge, IMSHOP calls answered
                       at once by the sandbox, limiter with a huge budget) vs json.loads + a once-compiled
                       fastjsonschema validation of the same bodies
  3. peak RSS          of a worker handling a 6 MB batch (the Lambda payload limit) vs its RSS after import
  4. calls per batch   IMSHOP calls for one batch vs the lower bound sum(ceil(unique recipients / 1000)) per content
  5. calls per window  achieved under a sustained backlog (time-scaled, production ratios) vs the configured limit
  6. idle latency      message sent -> IMSHOP call, with an idle queue, vs the batching window
  7. lanes             transactional latency under a saturated bulk backlog vs one window + batching window + call
                       time; utilisation with bulk only and with both lanes vs the limit (bench/lanes.py)
  8. history           read latency p50/p99 of the webhook's one Query over 100,000 entries in moto vs a GetItem;
                       write cost of a confirmed call to 1,000 users in DynamoDB requests vs a PutItem each
  9. blast             IMSHOP calls for a one-text blast sent one recipient per message while the limiter is busy,
                       per lane, vs the lower bound; a 1/10 model of 3,000 requests (bench/blast.py)
 10. aws requests      SQS + DynamoDB requests the function makes per 1,000 notification requests, beside the same
                       scenario run on the code and template of --baseline-ref (bench/aws_requests.py)
 11. backlog drain     the demo's backlog shape (40 texts x 10 requests) on the transactional lane: calls vs the
                       lower bound, time to drain vs the limit's windows, quiet and with a core kept busy
                       (bench/backlog_drain.py)
 12. streamed blast    IMSHOP calls for a one-text blast published over seconds, one recipient per message, while
                       other traffic holds half the budget, per lane, vs the lower bound (bench/streamed_blast.py)
 13. fallback          unique one-recipient personal pushes with one fallback, arriving while the limiter is
                       saturated: calls, share reached by the fallback, latency p50/p95/max, beside the same
                       traffic without a fallback (bench/fallback.py)

Handler measurements run in child processes (`python -m bench _handle ...`, `... _cpu ...`) so that their CPU time
and memory are the handler's alone; the IMSHOP sandbox and the AWS emulator live in this process. The workers'
stdout (EMF metrics, JSON logs) goes to a log file whose path is printed, not to the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imshop_push_local.sandbox import ImshopSandbox

from bench.aws_requests import BASELINE_REF, aws_requests
from bench.backlog_drain import backlog_drain
from bench.blast import blast
from bench.calls_per_batch import calls_per_batch
from bench.calls_per_window import calls_per_window
from bench.cold_start import cold_start
from bench.common import HUGE_LIMIT, Console, Figure
from bench.fallback import fallback
from bench.handler_cpu import _child_cpu, handler_cpu
from bench.history_figures import history_figures
from bench.idle_latency import idle_latency
from bench.lanes import lanes
from bench.peak_rss import _child_handle, peak_rss
from bench.streamed_blast import streamed_blast

SECTIONS = (
    "cold",
    "cpu",
    "rss",
    "calls",
    "window",
    "latency",
    "lanes",
    "history",
    "blast",
    "aws",
    "backlog",
    "stream",
    "fallback",
)


def _table(figures: Sequence[Figure]) -> list[str]:
    head = ("figure", "measured", "baseline (same run)", "ratio", "target", "result")
    rows = [
        (f.name, f.value_text, f.baseline_text, f"{f.ratio:.2f}x", f.target, "pass" if f.passed else "MISSED")
        for f in figures
    ]
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def _measure(console: Console, only: Sequence[str], baseline_ref: str | None) -> list[Figure]:
    import logging

    from imshop_push_local.aws_emulator import MotoServer
    from imshop_push_local.sandbox import ImshopSandbox

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    figures: list[Figure] = []
    with ImshopSandbox(rate_limit_requests=HUGE_LIMIT, rate_limit_window_seconds=60.0) as sandbox:
        in_process: dict[str, Callable[[Console, ImshopSandbox], Figure]] = {
            "cpu": handler_cpu,
            "rss": peak_rss,
            "calls": calls_per_batch,
        }
        if "cold" in only:
            figures.append(cold_start(console))
        figures += [measure(console, sandbox) for name, measure in in_process.items() if name in only]
    if {"window", "latency", "lanes", "history", "blast", "aws", "backlog", "stream", "fallback"} & set(only):
        console.progress("starting the AWS emulator (moto server)")
        with MotoServer() as moto:
            through_event_source = {"window": calls_per_window, "latency": idle_latency}
            figures += [measure(console, moto) for name, measure in through_event_source.items() if name in only]
            if "lanes" in only:
                figures += lanes(console, moto)
            if "history" in only:
                figures += history_figures(console, moto)
            if "blast" in only:
                figures += blast(console, moto)
            if "aws" in only:
                figures += aws_requests(console, moto, baseline_ref)
            if "backlog" in only:
                figures += backlog_drain(console, moto)
            if "stream" in only:
                figures += streamed_blast(console, moto)
            if "fallback" in only:
                figures += fallback(console, moto)
    return figures


def _report(console: Console, figures: Sequence[Figure]) -> None:
    console.say()
    console.say("details")
    for f in figures:
        console.say(f"  {f.name}")
        for d in f.details:
            console.say(f"    {d}")
    console.say()
    for row in _table(figures):
        console.say(row)
    missed = [f for f in figures if not f.passed]
    console.say()
    if not missed:
        console.say(f"all {len(figures)} targets met.")
        return
    console.say(f"MISSED {len(missed)} of {len(figures)} targets:")
    for f in missed:
        console.say(f"  - {f.name}: {f.value_text} vs {f.baseline_text} = {f.ratio:.2f}x (target {f.target}).")
        console.say(f"    why: {f.why}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="imshop-push benchmark (issue 4)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these figures")
    parser.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help="commit whose template and code run the AWS-requests scenarios beside this checkout's ('none': skip)",
    )
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    console.say("imshop-push benchmark: each figure beside its baseline measured in this run")
    console.say(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs; worker output -> {console.log_path}")
    figures = _measure(console, args.only, None if args.baseline_ref == "none" else args.baseline_ref)
    _report(console, figures)
    console.say(f"bench took {time.monotonic() - started:.0f} s")
    return 0


def _child_main(argv: list[str]) -> int:
    kind, *rest = argv
    if kind == "_handle":
        _child_handle(*rest)
    elif kind == "_cpu":
        _child_cpu(*rest)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        sys.exit(_child_main(sys.argv[1:]))
    sys.exit(main())
