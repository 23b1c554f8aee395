"""`make demo` is a page a person reads: the story of the run, never the function's raw JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _is_json_line(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return line.strip().startswith(("{", "["))


def test_the_demo_prints_its_story_without_json_lines() -> None:
    paths = [REPO_ROOT / "layers" / "imshop_push", REPO_ROOT / "functions" / "send_notifications", REPO_ROOT / "local"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    small = ["--backlog-notifications", "2", "--requests-per-notification", "3", "--recipients-per-request", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "imshop_push_local.demo", *small],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert [line for line in output.splitlines() if _is_json_line(line)] == []
    assert "the function's metrics: RequestsReceived 9" in result.stdout
    assert "bulk calls still waiting when it arrived:" in result.stdout, "an order status overtakes a campaign"
    function_output = Path(result.stdout.split("as CloudWatch would get them): ", 1)[1].split()[0])
    assert any('"_aws"' in line for line in function_output.read_text().splitlines()), "the metrics are kept"
