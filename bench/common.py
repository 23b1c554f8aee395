"""What every figure shares: where the code is, the figure record, the console, child processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from imshop_push_local.sandbox import ImshopSandbox


REPO_ROOT = Path(__file__).resolve().parents[1]


CODE_PATHS = [
    str(REPO_ROOT / "layers" / "imshop_push"),
    str(REPO_ROOT / "functions" / "send_notifications"),
    str(REPO_ROOT / "local"),
]


for _path in reversed(CODE_PATHS):  # `python -m bench` works without make's PYTHONPATH too
    if _path not in sys.path:
        sys.path.insert(0, _path)


CPU_RECORDS = 10_000
CPU_CONTENTS = 300  # "a realistic mix of a few hundred distinct contents"
HUGE_LIMIT = 1_000_000


LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes: the synchronous invocation payload limit


SMALLEST_LAMBDA_MB = 128


MAX_BATCH = 10_000


SQS_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-queue"


@dataclasses.dataclass
class Figure:
    name: str
    value: float
    value_text: str
    baseline_text: str
    ratio: float
    target: str
    passed: bool
    why: str = ""  # for a missed target: what bounds it
    details: list[str] = dataclasses.field(default_factory=list)


class Console:
    """Progress and results go to the terminal; children's stdout (EMF, JSON logs) goes to a log file."""

    def __init__(self) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix="imshop-push-bench-", suffix=".log")
        sys.stdout.flush()
        self._terminal_fd = os.dup(1)
        os.dup2(fd, 1)
        os.close(fd)
        self.out: TextIO = open(self._terminal_fd, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115 - into the log

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        self.say(f"[{time.strftime('%H:%M:%S')}] {text}")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "IMSHOP_", "STATE_", "RATE_"))
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(CODE_PATHS),
            "IMSHOP_API_URL": "http://127.0.0.1:9/api/push/bench",
            "POWERTOOLS_SERVICE_NAME": "imshop-push",
            "POWERTOOLS_METRICS_NAMESPACE": "ImshopPush",
            "AWS_DEFAULT_REGION": "eu-central-1",
            "AWS_REGION": "eu-central-1",
        }
    )
    env.update(extra or {})
    return env


class _Context:
    """The parts of LambdaContext the handler and Powertools read; the remaining time is large."""

    function_name = "imshop-push-send-notifications"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:imshop-push-send-notifications"
    memory_limit_in_mb = SMALLEST_LAMBDA_MB
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/imshop-push-send-notifications"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _memory_mb() -> dict[str, float]:
    found = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def _run_child(console: Console, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imshop-push-bench-") as tmp:
        result = Path(tmp) / "result.json"
        done = subprocess.run(
            [sys.executable, "-m", "bench", *args, str(result)],
            env=env,
            check=False,
            cwd=REPO_ROOT,
            stdout=sys.stdout,  # the log file
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            console.say(done.stderr[-3000:])
            raise RuntimeError(f"bench child {args[0]} failed with exit status {done.returncode}")
        data: dict[str, Any] = json.loads(result.read_text())
        return data


def _handler_env(sandbox: ImshopSandbox) -> dict[str, str]:
    return _child_env(
        {
            "IMSHOP_API_URL": sandbox.url,
            "RATE_LIMIT_REQUESTS": str(HUGE_LIMIT),
            # A short window: a huge budget per second, without the previous batches' slots lingering in the
            # in-process limiter (with the vendor's limit of 10 it never holds more than 10).
            "RATE_LIMIT_WINDOW_SECONDS": "1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )


@contextlib.contextmanager
def _event_file(event: dict[str, Any]) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", prefix="imshop-push-event-", suffix=".json", encoding="utf-8") as f:
        json.dump(event, f, ensure_ascii=False)
        f.flush()
        yield f.name
