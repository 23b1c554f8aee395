"""Figure 1: cold start, a fresh-process `import app` vs an import of what it needs at import time."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from bench.common import REPO_ROOT, Console, Figure, _child_env, _median

# What the handler module genuinely needs at import time: every third-party import statement of app.py and of the
# layer modules it loads, and nothing of our own code. botocore (the layer names its ClientError for DynamoDB and
# SQS failures) is deliberately left out: a run without a state table does not need it at import time.
BASELINE_IMPORTS = (
    "from aws_lambda_powertools import Logger, Metrics\n"
    "from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers\n"
    "from aws_lambda_powertools.metrics import MetricUnit\n"
    "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response\n"
    "from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord\n"
    "from aws_lambda_powertools.utilities.typing import LambdaContext\n"
    "from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError\n"
    "import urllib3\n"
    "import urllib3.exceptions\n"
    "import fastjsonschema\n"
)


HANDLER_IMPORT = "import app\n"


COLD_RUNS = 9


def _timed_import(code: str, env: dict[str, str]) -> float:
    script = f"import time\n_t = time.perf_counter()\n{code}print(time.perf_counter() - _t)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return float(done.stdout.strip().splitlines()[-1])


def _import_profile(env: dict[str, str]) -> list[tuple[int, str]]:
    """Modules `import app` loads beyond the baseline, by self time (µs): what the extra import time is made of."""
    code = BASELINE_IMPORTS + "import sys\nsys.stderr.write('--baseline done--\\n')\n" + HANDLER_IMPORT
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    lines = done.stderr.splitlines()
    after = lines[lines.index("--baseline done--") + 1 :]
    rows = []
    for line in after:
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            rows.append((int(m.group(1)), m.group(3)))
    return sorted(rows, reverse=True)


def cold_start(console: Console) -> Figure:
    """Both sides with bytecode caches warm (in a private pycache prefix, so the tree is not touched), as a
    deployment that ships .pyc files would run; the cost of compiling our modules at every cold start (what a
    source-only layer pays, Lambda's file system being read-only) is reported beside it."""
    console.progress(f"cold start: {COLD_RUNS} fresh processes each, interleaved, after one warm-up that writes .pyc")
    with tempfile.TemporaryDirectory(prefix="imshop-push-pyc-") as warm, tempfile.TemporaryDirectory() as deps_only:
        env = {k: v for k, v in _child_env({"PYTHONPYCACHEPREFIX": warm}).items() if k != "PYTHONDONTWRITEBYTECODE"}
        _timed_import(BASELINE_IMPORTS, env)
        _timed_import(HANDLER_IMPORT, env)
        base, handler = [], []
        for _ in range(COLD_RUNS):
            base.append(_timed_import(BASELINE_IMPORTS, env))
            handler.append(_timed_import(HANDLER_IMPORT, env))
        profile = _import_profile(env)
        # Source only: dependencies from .pyc, our modules compiled on every import.
        source_env = {**env, "PYTHONPYCACHEPREFIX": deps_only}
        _timed_import(BASELINE_IMPORTS, source_env)
        source_env["PYTHONDONTWRITEBYTECODE"] = "1"
        source = [_timed_import(HANDLER_IMPORT, source_env) for _ in range(max(3, COLD_RUNS // 2))]
    ratios = [h / b for h, b in zip(handler, base, strict=True)]
    ratio = _median(ratios)
    b, h, src = _median(base), _median(handler), _median(source)
    extra = sum(us for us, _ in profile)
    ours = sum(us for us, name in profile if name.startswith(("imshop_push", "app")))
    top = ", ".join(f"{name} {us / 1000:.1f}" for us, name in profile[:6])
    return Figure(
        name="cold start (import app)",
        value=h,
        value_text=f"{h * 1000:.0f} ms",
        baseline_text=f"{b * 1000:.0f} ms deps",
        ratio=ratio,
        target="≤ 1.30x",
        passed=ratio <= 1.3,
        why=(
            f"beyond the baseline, import app spends ~{extra / 1000:.0f} ms, ~{ours / 1000:.0f} ms of it in our own"
            f" modules (class and dataclass creation); largest (ms): {top}"
        ),
        details=[
            f"median of per-run ratios {ratio:.2f}; runs (ms): app {' '.join(f'{x * 1000:.0f}' for x in handler)};"
            f" deps {' '.join(f'{x * 1000:.0f}' for x in base)}",
            f"beyond the baseline (-X importtime self, ms): ~{extra / 1000:.0f}, our modules ~{ours / 1000:.0f}; {top}",
            f"source-only layer (our modules compiled at each cold start): {src * 1000:.0f} ms = {src / b:.2f}x deps;"
            " shipping .pyc (python -m compileall in the build) avoids that",
        ],
    )
