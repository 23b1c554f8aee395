"""What the figures run through the local stack share: the time-scaled stack with the template's per-lane batch
sizes, the function's AWS requests told apart from the bench's, and another commit's checkout.

imshop_push_local is imported inside the functions: the handler's child processes (`python -m bench _cpu`) import
this package too, and their CPU and memory figures must not carry the local stack.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import REPO_ROOT

if TYPE_CHECKING:
    from imshop_push_local.event_source import SqsEventSource
    from imshop_push_local.stack import LocalStack, StackSettings

# The function's boto3 clients (and its poller's) say this in their User-Agent, so that the emulator can count
# what the function asks of AWS apart from what the bench does (provisioning, publishing, reading back).
FUNCTION_APP_ID = "imshop-push-function"
FUNCTION_TIMEOUT_RATIO = 1.5  # 90 s / 60 s window in production: time enough to wait one window in-process
# moto's round trips are not time-scaled (tens of ms each, many per batch of 100): a 3 s timeout for a 2 s window
# ends executions half-way (cold starts, dead letters), so the function never gets less than this.
MIN_FUNCTION_TIMEOUT_SECONDS = 6.0
# Not time-scaled: moto's ReceiveMessage takes 0.1 to 1 s for 10 messages of a deep queue on a busy machine, so
# the template's 1 s scaled to 33 ms would gather 10 or 20 messages where Lambda fills the batch size. Batch sizes
# decide calls and requests per message; the window only adds latency.
BATCHING_WINDOW_SECONDS = 3.0
# What Lambda's poller does, not the function: a real event source mapping polls in its own way.
EVENT_SOURCE_OPERATIONS = frozenset({"ReceiveMessage", "DeleteMessageBatch"})

type Requests = collections.Counter[tuple[str, str, str]]


def stack_settings(
    template: Path | None = None, *, window_seconds: float = 2.0, max_recipients: int | None = None
) -> StackSettings:
    """The demo's 1/30 time scale (a 2 s window, 10 calls; or another window, with the function timeout in
    production's ratio to it, at least MIN_FUNCTION_TIMEOUT_SECONDS) with the template's per-lane batch sizes and
    concurrency, batching windows of BATCHING_WINDOW_SECONDS, no history table (optional, and absent from older
    checkouts), and the function's requests labelled."""
    from imshop_push_local.aws_emulator import LocalTuning
    from imshop_push_local.demo import DEMO_SETTINGS
    from imshop_push_local.stack import StackSettings

    @dataclasses.dataclass(frozen=True)
    class Labelled(StackSettings):
        def tuning(self) -> LocalTuning:
            tuning = super().tuning()
            return dataclasses.replace(tuning, environment={**tuning.environment, "AWS_SDK_UA_APP_ID": FUNCTION_APP_ID})

    fields = {f.name: getattr(DEMO_SETTINGS, f.name) for f in dataclasses.fields(DEMO_SETTINGS)}
    timeout = max(MIN_FUNCTION_TIMEOUT_SECONDS, FUNCTION_TIMEOUT_RATIO * window_seconds)
    return Labelled(
        **{
            **fields,
            "batch_size": None,
            "batching_window_seconds": BATCHING_WINDOW_SECONDS,
            "rate_limit_window_seconds": window_seconds,
            "function_timeout_seconds": timeout,
            "visibility_timeout_seconds": int(6 * timeout),
            "history": False,
            "max_recipients": max_recipients,
            **({"template": template} if template is not None else {}),
        }
    )


@contextlib.contextmanager
def consumers(stack: LocalStack, *, batch_divisor: int = 1, timeout: float = 120.0) -> Iterator[list[SqsEventSource]]:
    """A poller for every event source of the template, its BatchSize divided by `batch_divisor`; each execution
    environment past its cold start before this yields."""
    from imshop_push_local.event_source import SqsEventSource
    from imshop_push_local.stack import event_source_config

    sources: list[SqsEventSource] = []
    try:
        for function in stack.aws.functions.values():
            for mapping in function.sqs_sources:
                scaled = dataclasses.replace(mapping, batch_size=max(1, mapping.batch_size // batch_divisor))
                config = event_source_config(function, scaled, region=stack.aws.region)
                env = stack.aws.env(function)
                sources.append(SqsEventSource(config, env=env, sys_path=list(function.code_paths)).start())
        if not all(source.wait_ready(timeout) for source in sources):
            raise RuntimeError(f"the function's workers were not ready within {timeout:g} s")
        yield sources
    finally:
        for source in sources:
            source.stop()


def drain(sources: list[SqsEventSource], timeout: float) -> bool:
    """Every queue empty, nothing in flight (twice in a row, per source)."""
    return all(source.drain(timeout=timeout) for source in sources)


def function_requests(requests: Requests) -> Requests:
    """The function's own requests: its poller's ReceiveMessage / DeleteMessageBatch left out."""
    return collections.Counter(
        {k: n for k, n in requests.items() if k[0] == FUNCTION_APP_ID and k[2] not in EVENT_SOURCE_OPERATIONS}
    )


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The tree of `ref` (`git archive`) in a temporary directory: its template, layer and function code."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO_ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise LookupError(f"git archive {ref}: {archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix=f"imshop-push-{ref}-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)
