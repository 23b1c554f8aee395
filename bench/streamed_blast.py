"""Figure 12: IMSHOP calls for a one-text blast that *streams in*, one recipient a message, vs the lower bound.

Figure 9 queues the blast before the pollers start. A CRM job writes it over a few seconds instead, and other
traffic keeps part of the budget busy, so free slots come and go while the blast arrives: a batch that spent one
on the few recipients it holds would cost a call per batch (32 calls for a lower bound of 3, measured before
"fill before you spend"). Here the pollers run first, the blast is published in CHUNKS over about
PUBLISH_SECONDS, and OtherTraffic takes half the slots of every window meanwhile.

The same 1/10 model as figure 9 (300 requests, 100 recipients a call, each lane's BatchSize / 10: lower bound 3,
target at most 4), with a 20 s window for the same reason: moto takes several seconds to accept and hand over a
few hundred messages on a busy two-core machine, and the stream must stay within about a window, as a producer's
few seconds are within the vendor's minute. On the transactional lane the blast merges in each batch first.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.blast import BLAST_REQUESTS, MAX_RECIPIENTS, SCALE, WINDOW_SECONDS, blast_figure, blast_run, recipient
from bench.common import Console, Figure
from bench.stack_runs import consumers, drain, stack_settings

MESSAGE = {"title": "Your points expire tonight", "summary": "One text, streamed one recipient per message"}
CHUNKS = 10
PUBLISH_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 300.0


def _run_lane(moto: MotoServer, lane: str) -> dict[str, Any]:
    from imshop_push_local.other_traffic import OtherTraffic
    from imshop_push_local.stack import LocalStack

    settings = stack_settings(window_seconds=WINDOW_SECONDS, max_recipients=MAX_RECIPIENTS)
    with LocalStack(settings, moto=moto) as stack, consumers(stack, batch_divisor=SCALE) as sources:
        queue_url = stack.aws.bulk_queue.url if lane == "bulk" else stack.aws.queue_url
        limit = stack.sandbox.rate_limit_requests
        started = time.monotonic()
        with OtherTraffic(stack, limit=limit, window=WINDOW_SECONDS, share=limit // 2):
            for chunk in range(CHUNKS):
                part = range(chunk * BLAST_REQUESTS // CHUNKS, (chunk + 1) * BLAST_REQUESTS // CHUNKS)
                stack.publish(({"userIds": [recipient(n)], "message": MESSAGE} for n in part), queue_url=queue_url)
                threading.Event().wait(max(0.0, started + (chunk + 1) * PUBLISH_SECONDS / CHUNKS - time.monotonic()))
            publish_seconds = time.monotonic() - started
            drained = drain(sources, DRAIN_TIMEOUT_SECONDS)
        [config] = [s.config for s in sources if s.config.queue_url == queue_url]
        return {**blast_run(stack, MESSAGE["title"], drained), "publish_seconds": publish_seconds, "config": config}


def _figure(lane: str, run: dict[str, Any]) -> Figure:
    return blast_figure(
        f"streamed one-text blast, {lane} lane (1/{SCALE} model)",
        run,
        f"{BLAST_REQUESTS:,} requests published in {CHUNKS} chunks over {run['publish_seconds']:.1f} s while the"
        f" pollers ran and other traffic took half the slots; window {WINDOW_SECONDS:g} s, BatchSize"
        f" {run['config'].batch_size}",
    )


def streamed_blast(console: Console, moto: MotoServer) -> list[Figure]:
    figures = []
    for lane in ("bulk", "transactional"):
        console.progress(f"streamed blast ({lane}): {BLAST_REQUESTS:,} requests over {PUBLISH_SECONDS:g} s")
        figures.append(_figure(lane, _run_lane(moto, lane)))
    return figures
